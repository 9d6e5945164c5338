
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_pgsql.h"


/*
 * The "pgsql" directory's parameters: "connect", libpq's connection
 * string, parsed as libpq will parse it (a host given by name is warned
 * of), and "query" and "recipient_query", which must take the login as
 * their only parameter, $1, and never by a substitution into their text.
 */


#if !(NGX_MAIL_PLUS_PGSQL)

char *
ngx_mail_plus_dir_pgsql_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "directory \"%V\" of type \"pgsql\": the module was "
                       "built without libpq", &dir->name);
    return NGX_CONF_ERROR;
}

#else


static char *ngx_mail_plus_dir_pgsql_conninfo(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_param_t *param,
    char **conninfo);
static void ngx_mail_plus_dir_pgsql_hosts(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_param_t *param,
    PQconninfoOption *opts);
static char *ngx_mail_plus_dir_pgsql_query(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_param_t *param,
    char **query);


/*
 * "connect", "query" and the optional "recipient_query"; nothing is
 * connected at "nginx -t" nor at start: the first lookup connects
 */

char *
ngx_mail_plus_dir_pgsql_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    char                            *rv;
    ngx_mail_plus_dir_param_t       *param;
    ngx_mail_plus_dir_pgsql_conf_t  *pcf;

    pcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_dir_pgsql_conf_t));
    if (pcf == NULL) {
        return NGX_CONF_ERROR;
    }

    param = ngx_mail_plus_dir_param(dir, "connect");

    if (param == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "directory \"%V\" in %s:%ui needs \"connect\"",
                      &dir->name, dir->file, dir->line);
        return NGX_CONF_ERROR;
    }

    rv = ngx_mail_plus_dir_pgsql_conninfo(cf, dir, param, &pcf->conninfo);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    param = ngx_mail_plus_dir_param(dir, "query");

    if (param == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "directory \"%V\" in %s:%ui needs \"query\"",
                      &dir->name, dir->file, dir->line);
        return NGX_CONF_ERROR;
    }

    rv = ngx_mail_plus_dir_pgsql_query(cf, dir, param,
                                       &pcf->query[NGX_MAIL_PLUS_DIR_PASSDB]);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    param = ngx_mail_plus_dir_param(dir, "recipient_query");

    if (param) {
        rv = ngx_mail_plus_dir_pgsql_query(cf, dir, param,
                                       &pcf->query[NGX_MAIL_PLUS_DIR_USERDB]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        dir->userdb = 1;
    }

    dir->conf = pcf;

    return NGX_CONF_OK;
}


/*
 * libpq's connection string, parsed as libpq will; a host given by name
 * is warned of: libpq resolves it with a call that blocks the worker
 */

static char *
ngx_mail_plus_dir_pgsql_conninfo(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_param_t *param, char **conninfo)
{
    char              *err;
    size_t             len;
    ngx_str_t         *value;
    PQconninfoOption  *opts;
    u_char             buf[NGX_MAIL_PLUS_PGSQL_ERROR_LEN];

    value = param->args->elts;

    if (param->args->nelts != 1 || value[0].len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"connect\" of directory \"%V\" in %s:%ui",
                      &dir->name, param->file, param->line);
        return NGX_CONF_ERROR;
    }

    *conninfo = (char *) ngx_pnalloc(cf->pool, value[0].len + 1);
    if (*conninfo == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn((u_char *) *conninfo, value[0].data, value[0].len + 1);

    err = NULL;
    opts = PQconninfoParse(*conninfo, &err);

    if (opts == NULL) {
        len = ngx_mail_plus_dir_pgsql_clean(buf, sizeof(buf),
                                            err ? err : "out of memory");
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"connect\" of directory \"%V\" in %s:%ui: "
                      "%*s", &dir->name, param->file, param->line, len, buf);

        if (err) {
            PQfreemem(err);
        }

        return NGX_CONF_ERROR;
    }

    ngx_mail_plus_dir_pgsql_hosts(cf, dir, param, opts);

    PQconninfoFree(opts);

    return NGX_CONF_OK;
}


/*
 * each host of the connection string: an address, a socket's directory,
 * or a name, which is warned of
 */

static void
ngx_mail_plus_dir_pgsql_hosts(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_param_t *param, PQconninfoOption *opts)
{
    u_char            *p, *last, *start;
    size_t             len;
    ngx_str_t          host;
    ngx_uint_t         hostaddr;
    PQconninfoOption  *opt;

    hostaddr = 0;
    ngx_str_null(&host);

    for (opt = opts; opt->keyword; opt++) {
        if (opt->val == NULL || opt->val[0] == '\0') {
            continue;
        }

        if (ngx_strcmp(opt->keyword, "hostaddr") == 0) {
            hostaddr = 1;

        } else if (ngx_strcmp(opt->keyword, "host") == 0) {
            host.data = (u_char *) opt->val;
            host.len = ngx_strlen(opt->val);
        }
    }

    p = host.data;
    last = host.data + host.len;

    while (!hostaddr && p < last) {

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        len = p - start;
        p++;

        if (len == 0 || start[0] == '/' || start[0] == '@'
            || ngx_inet_addr(start, len) != INADDR_NONE)
        {
            continue;
        }

#if (NGX_HAVE_INET6)
        {
        struct in6_addr  in6;

        if (ngx_inet6_addr(start, len, in6.s6_addr) == NGX_OK) {
            continue;
        }
        }
#endif

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "directory \"%V\" in %s:%ui: the host \"%*s\" is a "
                      "name, which libpq resolves with a blocking call at "
                      "each connection; give an address, or \"hostaddr\"",
                      &dir->name, param->file, param->line, len, start);
        break;
    }
}


/*
 * a query: the login is the parameter $1, which must be there outside a
 * quoted string, and the only one; what looks like a substitution into
 * the text ('%u', %s, %{user}) is refused, since none is ever made
 */

static char *
ngx_mail_plus_dir_pgsql_query(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_param_t *param, char **query)
{
    u_char     *p, *last, quote;
    char       *err;
    ngx_str_t  *value;
    ngx_int_t   n;
    ngx_uint_t  found;

    value = param->args->elts;

    if (param->args->nelts != 1 || value[0].len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid \"%V\" of directory \"%V\" in %s:%ui",
                      &param->name, &dir->name, param->file, param->line);
        return NGX_CONF_ERROR;
    }

    p = value[0].data;
    last = p + value[0].len;

    quote = 0;
    found = 0;
    err = NULL;

    for ( /* void */ ; p < last && err == NULL; p++) {

        if (*p == '%' && p + 1 < last
            && (p[1] == '{' || (p[1] >= 'a' && p[1] <= 'z')
                || (p[1] >= 'A' && p[1] <= 'Z')))
        {
            err = "has a substitution in its text (\"%x\" or \"%{...}\"), "
                  "which is never made: the login is the parameter $1";
            break;
        }

        if (quote) {
            if (*p == quote) {
                quote = 0;
            }

            continue;
        }

        if (*p == '\'' || *p == '"') {
            quote = *p;
            continue;
        }

        if (*p != '$' || p + 1 == last || p[1] < '0' || p[1] > '9') {
            continue;
        }

        for (n = 0, p++; p < last && *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');

            if (n > 1) {
                break;
            }
        }

        p--;

        if (n != 1) {
            err = "has a parameter other than $1, the login";
        }

        found = 1;
    }

    if (err == NULL && !found) {
        err = "has no parameter $1 (outside a quoted string) for the login";
    }

    if (err) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "the \"%V\" of directory \"%V\" in %s:%ui %s",
                      &param->name, &dir->name, param->file, param->line,
                      err);
        return NGX_CONF_ERROR;
    }

    *query = (char *) ngx_pnalloc(cf->pool, value[0].len + 1);
    if (*query == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn((u_char *) *query, value[0].data, value[0].len + 1);

    return NGX_CONF_OK;
}

#endif
