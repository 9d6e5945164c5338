
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_router.h"


/*
 * The router: all policy on who may log in and where a login goes.
 *
 * A login goes to the target of its users file entry, else to the pool
 * of the first "router_rule" whose regular expression matches it, else to
 * the default pool; within the pool, the hash ring picks the server.  The
 * password is checked here for pools with "auth router" and left to the
 * backend for pools with "auth backend".  A user may come from a directory
 * (directory/) instead of the users file; a user's extra fields may name
 * its server's port and its login on the backend, or refuse it
 * ("nologin"), or leave its password to the backend ("nopassword").
 */


#define NGX_MAIL_PLUS_MAX_CAPTURES  9


static ngx_int_t ngx_mail_plus_router_check_template(ngx_str_t *template,
    ngx_uint_t captures);
static ngx_int_t ngx_mail_plus_router_match(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log);
static ngx_int_t ngx_mail_plus_router_server(ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log);
static ngx_int_t ngx_mail_plus_router_expand(ngx_pool_t *pool,
    ngx_str_t *template, ngx_str_t *subject, int *captures, ngx_int_t n,
    ngx_str_t *result);


char *
ngx_mail_plus_router_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_mail_plus_main_conf_t *mpcf = conf;

    u_char                 errstr[NGX_MAX_CONF_ERRSTR];
    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_regex_compile_t    rc;
    ngx_mail_plus_rule_t  *rule;

    value = cf->args->elts;

    rule = ngx_array_push(&mpcf->rules);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_mail_plus_rule_t));

    rule->pattern = value[1];
    rule->file = cf->conf_file->file.name.data;
    rule->line = cf->conf_file->line;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0
            && rule->pool.data == NULL && value[i].len > 5)
        {
            rule->pool.data = value[i].data + 5;
            rule->pool.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "login=", 6) == 0
            && rule->login.data == NULL && value[i].len > 6)
        {
            rule->login.data = value[i].data + 6;
            rule->login.len = value[i].len - 6;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rule->pool.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_rule\" needs \"pool=\"");
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = value[1];
    rc.pool = cf->pool;
    rc.options = NGX_REGEX_CASELESS;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NGX_CONF_ERROR;
    }

    rule->regex = rc.regex;
    rule->captures = rc.captures;

    if (ngx_mail_plus_router_check_template(&rule->pool, rule->captures)
           != NGX_OK
        || ngx_mail_plus_router_check_template(&rule->login, rule->captures)
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_rule\" \"%V\" refers to a capture it "
                           "does not have", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_mail_plus_router_check_template(ngx_str_t *template, ngx_uint_t captures)
{
    ngx_uint_t  i, n;

    for (i = 0; i + 1 < template->len; i++) {

        if (template->data[i] != '$') {
            continue;
        }

        if (template->data[i + 1] < '1' || template->data[i + 1] > '9') {
            continue;
        }

        n = template->data[i + 1] - '0';

        if (n > captures) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


char *
ngx_mail_plus_router_init(ngx_conf_t *cf, ngx_mail_plus_main_conf_t *mpcf)
{
    ngx_uint_t              i;
    ngx_mail_plus_pool_t  **pools;
    ngx_mail_plus_rule_t   *rule;

    pools = mpcf->pools.elts;

    for (i = 0; i < mpcf->pools.nelts; i++) {
        if (ngx_mail_plus_pool_init_ring(cf, pools[i], mpcf->hash_points)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (mpcf->default_pool_name.len) {
        mpcf->default_pool = ngx_mail_plus_pool_find(mpcf,
                                                     &mpcf->default_pool_name);
        if (mpcf->default_pool == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown router pool \"%V\" in "
                          "\"router_default_pool\" in %s:%ui",
                          &mpcf->default_pool_name, mpcf->default_pool_file,
                          mpcf->default_pool_line);
            return NGX_CONF_ERROR;
        }

    } else if (mpcf->pools.nelts == 1) {
        mpcf->default_pool = pools[0];
    }

    rule = mpcf->rules.elts;

    for (i = 0; i < mpcf->rules.nelts; i++) {

        if (ngx_strlchr(rule[i].pool.data, rule[i].pool.data + rule[i].pool.len,
                        '$')
            != NULL)
        {
            continue;
        }

        rule[i].static_pool = ngx_mail_plus_pool_find(mpcf, &rule[i].pool);

        if (rule[i].static_pool == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown router pool \"%V\" in \"router_rule\" "
                          "in %s:%ui", &rule[i].pool, rule[i].file,
                          rule[i].line);
            return NGX_CONF_ERROR;
        }
    }

    if (mpcf->directories && mpcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_directory\" needs \"router_zone\": "
                      "the directories' answers are cached there");
        return NGX_CONF_ERROR;
    }

    if (mpcf->users_file.len) {
        return ngx_mail_plus_users_load(cf, mpcf);
    }

    for (i = 0; mpcf->directories == NULL && i < mpcf->pools.nelts; i++) {
        if (pools[i]->auth == NGX_MAIL_PLUS_AUTH_ROUTER) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "router pool \"%V\" in %s:%ui checks passwords "
                          "(\"auth router\") but neither a \"router_users\" "
                          "file nor a \"router_directory\" is set",
                          &pools[i]->name, pools[i]->file, pools[i]->line);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_mail_plus_router_route(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_int_t               rc;
    ngx_str_t               lc;
    ngx_mail_plus_user_t   *user;

    ngx_memzero(route, sizeof(ngx_mail_plus_route_t));

    route->status = NGX_MAIL_PLUS_DENY;
    route->login = auth->login;

    if (auth->login.len == 0) {
        ngx_str_set(&route->reason, "empty login");
        return NGX_OK;
    }

    /*
     * a control character has no place in a login or a password: it could
     * end a backend's command, an HTTP header or a log line early
     */

    if (ngx_mail_plus_text_has_ctl(&auth->login)
        || (auth->check && ngx_mail_plus_text_has_ctl(&auth->password)))
    {
        ngx_str_set(&route->reason,
                    "control character in the login or the password");
        return NGX_OK;
    }

    lc.len = auth->login.len;
    lc.data = ngx_pnalloc(pool, lc.len);
    if (lc.data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(lc.data, auth->login.data, lc.len);

    user = auth->looked_up ? auth->user
                           : ngx_mail_plus_users_find(mpcf->users, &lc);

    route->user = user;

    if (user && user->nologin && !auth->recipient) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: \"nologin\" user, reason \"%V\"",
                       &user->reason);

        if (user->reason.len == 0) {
            ngx_str_set(&route->reason, "nologin");
            return NGX_OK;
        }

        route->reason.len = sizeof("nologin: ") - 1 + user->reason.len;
        route->reason.data = ngx_pnalloc(pool, route->reason.len);
        if (route->reason.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(route->reason.data, "nologin: %V", &user->reason);

        return NGX_OK;
    }

    if (user && user->backend.len) {
        route->login = user->backend;
    }

    if (user && user->pool) {
        route->pool = user->pool;
        route->server = user->server;

#if (NGX_DEBUG)
        if (user->server) {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                           "router: users file target, server %V "
                           "of pool \"%V\"",
                           &user->server->name, &user->pool->name);

        } else {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                           "router: users file target, pool \"%V\"",
                           &user->pool->name);
        }
#endif
    }

    if (route->pool == NULL) {
        rc = ngx_mail_plus_router_match(mpcf, auth, route, pool, log);

        if (rc != NGX_OK) {
            return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
        }
    }

    if (route->pool == NULL) {
        route->pool = mpcf->default_pool;
    }

    if (route->pool == NULL) {
        ngx_str_set(&route->reason, "no route");
        return NGX_OK;
    }

    /* a token names a user, but only a user the router knows logs in */

    if ((auth->check || auth->token.len)
        && route->pool->auth == NGX_MAIL_PLUS_AUTH_ROUTER)
    {
        if (user == NULL) {
            ngx_str_set(&route->reason, "unknown user");
            return NGX_OK;
        }

        if (!auth->check) {
            /* the token was checked */

        } else if (user->checked) {
            route->checked = 1;

        } else if (!user->nopassword) {
            route->verify = 1;
        }
    }

    route->protocol = auth->protocol;

    return ngx_mail_plus_router_server(route, pool, log);
}


/*
 * the route's server: the user's, or the one the pool's ring gives for
 * the login as the backend knows it; ALLOW if it is up for the protocol,
 * else TEMPFAIL
 */

static ngx_int_t
ngx_mail_plus_router_server(ngx_mail_plus_route_t *route, ngx_pool_t *pool,
    ngx_log_t *log)
{
    ngx_str_t  key;

    if (route->server == NULL) {

        key.len = route->login.len;
        key.data = ngx_pnalloc(pool, key.len);
        if (key.data == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(key.data, route->login.data, key.len);

        route->key = key;
        route->server = ngx_mail_plus_pool_get_server(route->pool, &key,
                                                      route->protocol, NULL);

#if (NGX_DEBUG)
        if (route->server) {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                           "router: ring of pool \"%V\" gives server %V",
                           &route->pool->name, &route->server->name);
        }
#endif
    }

    if (route->server == NULL
        || !ngx_mail_plus_server_usable(route->server, route->protocol))
    {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: no live server in pool \"%V\"",
                       &route->pool->name);

        route->status = NGX_MAIL_PLUS_TEMPFAIL;
        route->verify = 0;
        ngx_str_set(&route->reason, "no live server for the protocol");
        return NGX_OK;
    }

    route->port = route->server->port[route->protocol];

    if (route->user && route->user->port) {
        route->port = route->user->port;
    }

    route->status = NGX_MAIL_PLUS_ALLOW;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, log, 0,
                   "router: route to pool \"%V\" server %V port %d, "
                   "password check %ud",
                   &route->pool->name, &route->server->name,
                   (int) route->port, route->verify);

    return NGX_OK;
}


/*
 * the first rule that matches the login: route->pool, and route->login if
 * the rule rewrites it; NGX_OK (route->pool is NULL if none matched),
 * NGX_DECLINED when the rule names an unknown pool, NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_router_match(ngx_mail_plus_main_conf_t *mpcf,
    ngx_mail_plus_auth_t *auth, ngx_mail_plus_route_t *route,
    ngx_pool_t *pool, ngx_log_t *log)
{
    int                     captures[(1 + NGX_MAIL_PLUS_MAX_CAPTURES) * 3];
    ngx_int_t               n;
    ngx_str_t               name;
    ngx_uint_t              i;
    ngx_mail_plus_rule_t   *rule;

    rule = mpcf->rules.elts;

    for (i = 0; i < mpcf->rules.nelts; i++) {

        n = ngx_regex_exec(rule[i].regex, &auth->login, captures,
                           (1 + NGX_MAIL_PLUS_MAX_CAPTURES) * 3);

        if (n == NGX_REGEX_NO_MATCHED) {
            continue;
        }

        if (n < 0) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          ngx_regex_exec_n " failed: %i on \"%V\" "
                          "using \"%V\"", n, &auth->login, &rule[i].pattern);
            return NGX_ERROR;
        }

        if (n == 0) {
            n = 1 + NGX_MAIL_PLUS_MAX_CAPTURES;
        }

        if (rule[i].static_pool) {
            route->pool = rule[i].static_pool;

        } else {
            if (ngx_mail_plus_router_expand(pool, &rule[i].pool, &auth->login,
                                            captures, n, &name)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            route->pool = ngx_mail_plus_pool_find(mpcf, &name);

            if (route->pool == NULL) {
                ngx_log_debug2(NGX_LOG_DEBUG_MAIL, log, 0,
                               "router: rule \"%V\" of %s names no pool",
                               &rule[i].pattern, rule[i].file);

                ngx_str_set(&route->reason, "rule names an unknown pool");
                return NGX_DECLINED;
            }
        }

        if (rule[i].login.len
            && ngx_mail_plus_router_expand(pool, &rule[i].login, &auth->login,
                                           captures, n, &route->login)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_log_debug4(NGX_LOG_DEBUG_MAIL, log, 0,
                       "router: rule \"%V\" in %s:%ui matched, pool \"%V\"",
                       &rule[i].pattern, rule[i].file, rule[i].line,
                       &route->pool->name);

        return NGX_OK;
    }

    return NGX_OK;
}


/*
 * after a failed connection to route->server: the next server of the pool
 * in the order of the ring that has not been tried, NGX_DECLINED if there
 * is none (a user fixed to one server has none)
 */

ngx_int_t
ngx_mail_plus_router_next(ngx_mail_plus_route_t *route)
{
    ngx_uint_t               n;
    ngx_mail_plus_server_t  *server;

    if (route->key.len == 0) {
        return NGX_DECLINED;
    }

    n = route->server->index;
    route->tried[n / 64] |= (uint64_t) 1 << (n % 64);

    server = ngx_mail_plus_pool_get_server(route->pool, &route->key,
                                           route->protocol, route->tried);
    if (server == NULL) {
        return NGX_DECLINED;
    }

    route->server = server;
    route->port = server->port[route->protocol];

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_router_expand(ngx_pool_t *pool, ngx_str_t *template,
    ngx_str_t *subject, int *captures, ngx_int_t n, ngx_str_t *result)
{
    u_char      *p, *t, *last;
    size_t       len;
    ngx_uint_t   k;

    len = 0;
    last = template->data + template->len;

    for (t = template->data; t < last; t++) {

        if (*t == '$' && t + 1 < last && t[1] >= '1' && t[1] <= '9') {
            k = t[1] - '0';

            if ((ngx_int_t) k < n && captures[k * 2] >= 0) {
                len += captures[k * 2 + 1] - captures[k * 2];
            }

            t++;
            continue;
        }

        len++;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    result->data = p;
    result->len = len;

    for (t = template->data; t < last; t++) {

        if (*t == '$' && t + 1 < last && t[1] >= '1' && t[1] <= '9') {
            k = t[1] - '0';

            if ((ngx_int_t) k < n && captures[k * 2] >= 0) {
                p = ngx_cpymem(p, subject->data + captures[k * 2],
                               captures[k * 2 + 1] - captures[k * 2]);
            }

            t++;
            continue;
        }

        *p++ = *t;
    }

    return NGX_OK;
}


void
ngx_mail_plus_router_verified(ngx_mail_plus_route_t *route, ngx_int_t rc,
    ngx_log_t *log)
{
    route->verify = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, log, 0, "router: password %s",
                   rc == NGX_OK ? "right"
                   : rc == NGX_DECLINED ? "wrong, denied" : "check failed");

    switch (rc) {

    case NGX_OK:
        return;

    case NGX_DECLINED:
        route->status = NGX_MAIL_PLUS_DENY;
        ngx_str_set(&route->reason, "wrong password");
        return;

    default:
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "password check of \"%V\" failed in the C library",
                      &route->user->login);
        route->status = NGX_MAIL_PLUS_TEMPFAIL;
        ngx_str_set(&route->reason, "password check failed");
        return;
    }
}
