
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_ldap.h"


/*
 * The LDAP source's parameters: the server's URL (an address, so that no
 * name is resolved while a worker runs), the search's bind, base, scope
 * and filters (checked: ngx_mail_plus_dir_ldap_filter.c), the password's
 * mode and the fields, and the attributes each search asks for.
 */


#if !(NGX_MAIL_PLUS_LDAP)

char *
ngx_mail_plus_dir_ldap_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "directory \"%V\": the module was built without "
                       "libldap", &dir->name);
    return NGX_CONF_ERROR;
}

#else


static char *ngx_mail_plus_dir_ldap_conf_filter(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, char *name, ngx_str_t *filter);
static char *ngx_mail_plus_dir_ldap_conf_fields(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_ldap_conf_t *lcf);
static char *ngx_mail_plus_dir_ldap_conf_url(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, ngx_mail_plus_dir_ldap_conf_t *lcf);
static char *ngx_mail_plus_dir_ldap_string(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir, char *name, char **value);


char *
ngx_mail_plus_dir_ldap_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    char                           *rv, *pw;
    ngx_str_t                      *value;
    ngx_mail_plus_dir_param_t      *param;
    ngx_mail_plus_dir_ldap_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_mail_plus_dir_ldap_conf_t));
    if (lcf == NULL) {
        return NGX_CONF_ERROR;
    }

    dir->conf = lcf;

    rv = ngx_mail_plus_dir_ldap_conf_url(cf, dir, lcf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ngx_mail_plus_dir_ldap_string(cf, dir, "bind_dn", &lcf->bind_dn)
        != NGX_CONF_OK
        || ngx_mail_plus_dir_ldap_string(cf, dir, "bind_password", &pw)
           != NGX_CONF_OK
        || ngx_mail_plus_dir_ldap_string(cf, dir, "base", &lcf->base)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (lcf->base == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\" needs \"base\"", &dir->name);
        return NGX_CONF_ERROR;
    }

    if ((lcf->bind_dn == NULL) != (pw == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\": \"bind_dn\" and "
                           "\"bind_password\" go together", &dir->name);
        return NGX_CONF_ERROR;
    }

    if (pw) {
        lcf->bind_pw.bv_val = pw;
        lcf->bind_pw.bv_len = ngx_strlen(pw);
    }

    lcf->scope = LDAP_SCOPE_SUBTREE;

    param = ngx_mail_plus_dir_param(dir, "scope");

    if (param) {
        value = param->args->elts;

        if (param->args->nelts == 1 && ngx_strcmp(value[0].data, "base") == 0)
        {
            lcf->scope = LDAP_SCOPE_BASE;

        } else if (param->args->nelts == 1
                   && ngx_strcmp(value[0].data, "one") == 0)
        {
            lcf->scope = LDAP_SCOPE_ONELEVEL;

        } else if (param->args->nelts != 1
                   || ngx_strcmp(value[0].data, "sub") != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "directory \"%V\": \"scope\" must be "
                               "\"base\", \"one\" or \"sub\"", &dir->name);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_mail_plus_dir_ldap_conf_filter(cf, dir, "filter", &lcf->filter)
        != NGX_CONF_OK
        || ngx_mail_plus_dir_ldap_conf_filter(cf, dir, "recipient_filter",
                                              &lcf->recipient_filter)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (lcf->filter.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\" needs \"filter\"", &dir->name);
        return NGX_CONF_ERROR;
    }

    dir->userdb = lcf->recipient_filter.len ? 1 : 0;

    param = ngx_mail_plus_dir_param(dir, "password");
    value = param ? param->args->elts : NULL;

    if (param == NULL || param->args->nelts != 1
        || (ngx_strcmp(value[0].data, "bind") != 0
            && (ngx_strncmp(value[0].data, "attribute=", 10) != 0
                || value[0].len == 10)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\" needs \"password "
                           "attribute=NAME\" or \"password bind\"",
                           &dir->name);
        return NGX_CONF_ERROR;
    }

    if (value[0].data[0] == 'a') {
        lcf->password = (char *) value[0].data + 10;
    }

    return ngx_mail_plus_dir_ldap_conf_fields(cf, dir, lcf);
}


/*
 * "url": ldap://HOST[:PORT], a name resolved now, so that none is while a
 * worker runs
 */

static char *
ngx_mail_plus_dir_ldap_conf_url(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_ldap_conf_t *lcf)
{
    u_char     *p;
    ngx_url_t   u;

    if (ngx_mail_plus_dir_ldap_string(cf, dir, "url", &lcf->url)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (lcf->url == NULL || ngx_strncmp(lcf->url, "ldap://", 7) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\" needs \"url ldap://HOST[:PORT]\"",
                           &dir->name);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = (u_char *) lcf->url + 7;
    u.url.len = ngx_strlen(u.url.data);
    u.default_port = 389;

    if (u.url.len && u.url.data[u.url.len - 1] == '/') {
        u.url.len--;
    }

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.uri.len || u.naddrs == 0
        || u.family == AF_UNIX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\": invalid \"url\" \"%s\", it must "
                           "be ldap://HOST[:PORT]%s%s", &dir->name, lcf->url,
                           u.err ? ": " : "", u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    /* the address as libldap reads it, IPv6 in brackets */

    p = ngx_pnalloc(cf->pool, sizeof("ldap://[]:65535") + NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    lcf->url = (char *) p;

    p = ngx_cpymem(p, "ldap://", 7);
    p += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                       NGX_SOCKADDR_STRLEN, 1);
    *p = '\0';

    return NGX_CONF_OK;
}


static char *
ngx_mail_plus_dir_ldap_conf_filter(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    char *name, ngx_str_t *filter)
{
    char                       *err;
    ngx_str_t                  *value;
    ngx_mail_plus_dir_param_t  *param;

    param = ngx_mail_plus_dir_param(dir, name);

    if (param == NULL) {
        return NGX_CONF_OK;
    }

    value = param->args->elts;

    err = (param->args->nelts == 1)
          ? ngx_mail_plus_dir_ldap_filter_check(&value[0])
          : "must be one value";

    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\": \"%s\" \"%V\" %s",
                           &dir->name, name, &value[0], err);
        return NGX_CONF_ERROR;
    }

    *filter = value[0];

    return NGX_CONF_OK;
}


/* "fields ours=attribute ...", and the attributes a search asks for */

static char *
ngx_mail_plus_dir_ldap_conf_fields(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    ngx_mail_plus_dir_ldap_conf_t *lcf)
{
    u_char                          *eq;
    ngx_str_t                       *value, test;
    ngx_uint_t                       i, n;
    ngx_mail_plus_dir_param_t       *param;
    ngx_mail_plus_user_fields_t      fields;
    ngx_mail_plus_dir_ldap_field_t  *field;

    param = ngx_mail_plus_dir_param(dir, "fields");
    n = param ? param->args->nelts : 0;

    if (ngx_array_init(&lcf->fields, cf->pool, n ? n : 1,
                       sizeof(ngx_mail_plus_dir_ldap_field_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    value = param ? param->args->elts : NULL;

    for (i = 0; i < n; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        ngx_str_set(&test, "1");
        ngx_memzero(&fields, sizeof(ngx_mail_plus_user_fields_t));

        if (eq == NULL || eq == value[i].data
            || eq == value[i].data + value[i].len - 1)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "directory \"%V\": invalid field \"%V\", it "
                               "must be NAME=ATTRIBUTE", &dir->name,
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        field = ngx_array_push(&lcf->fields);
        if (field == NULL) {
            return NGX_CONF_ERROR;
        }

        field->name.data = value[i].data;
        field->name.len = eq - value[i].data;
        field->attr = (char *) eq + 1;
    }

    /* NULL-terminated lists: the fields' attributes, the password's */

    lcf->attrs = ngx_pcalloc(cf->pool, (n + 2) * sizeof(char *));
    lcf->rcpt_attrs = ngx_pcalloc(cf->pool, (n + 2) * sizeof(char *));
    if (lcf->attrs == NULL || lcf->rcpt_attrs == NULL) {
        return NGX_CONF_ERROR;
    }

    field = lcf->fields.elts;

    for (i = 0; i < n; i++) {
        lcf->attrs[i] = field[i].attr;
        lcf->rcpt_attrs[i] = field[i].attr;
    }

    /* "1.1": no attribute at all (RFC 4511) */

    lcf->attrs[n] = lcf->password ? lcf->password : (n ? NULL : "1.1");
    lcf->rcpt_attrs[n] = n ? NULL : "1.1";

    return NGX_CONF_OK;
}


/* a parameter with one value, NUL-terminated (as nginx reads them) */

static char *
ngx_mail_plus_dir_ldap_string(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir,
    char *name, char **value)
{
    ngx_str_t                  *arg;
    ngx_mail_plus_dir_param_t  *param;

    *value = NULL;

    param = ngx_mail_plus_dir_param(dir, name);

    if (param == NULL) {
        return NGX_CONF_OK;
    }

    arg = param->args->elts;

    if (param->args->nelts != 1 || arg[0].len == 0
        || ngx_strlen(arg[0].data) != arg[0].len)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "directory \"%V\": \"%s\" must be one value",
                           &dir->name, name);
        return NGX_CONF_ERROR;
    }

    *value = (char *) arg[0].data;

    return NGX_CONF_OK;
}

#endif
