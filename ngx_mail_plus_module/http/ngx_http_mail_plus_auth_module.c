
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_http_mail_plus.h"
#include "ngx_mail_plus_token.h"


/*
 * Answers nginx's auth_http protocol from the router of the mail{} block,
 * so that stock "protocol pop3/imap/smtp" servers need no external
 * authentication service.  Crypt password hashes are checked in a thread
 * pool: they cost milliseconds each, by design.
 *
 * What the request carries is the client's: the login and the password
 * are decoded (ngx_http_mail_plus_parse.c) and go to the router, which
 * refuses a control character in them; log lines get them escaped; every
 * header of the answer is written by ngx_http_mail_plus_header(), which
 * refuses a value with a control character.
 *
 * SMTP AUTH for a pool with "auth backend": nobody here checks the
 * password, and stock nginx hands it to the backend only with
 * "proxy_smtp_auth on".  Such a login is refused unless the location says
 * "mail_router_auth_smtp_backend on" (then the answer carries Auth-User and
 * Auth-Pass for the backend's AUTH PLAIN, and the stock server must have
 * "proxy_smtp_auth on").
 *
 * Token logins ("Auth-Method: oauthbearer" or "xoauth2", the bearer token
 * in Auth-Pass, the SASL user, if any, in Auth-User) are checked by the
 * router's token verifier; a refused token's answer carries
 * Auth-Error-SASL, the base64 of RFC 7628's JSON status, for the server
 * to send as its challenge.  An allowed one carries the backend login of
 * the pool's "token_login".
 */


typedef struct {
    ngx_flag_t                          smtp_backend;
} ngx_http_mail_plus_auth_loc_conf_t;


typedef struct {
    ngx_mail_plus_check_t              *check;
    ngx_http_mail_plus_auth_request_t   req;
    ngx_str_t                           login;    /* escaped, for the log */
    ngx_str_t                           client;   /* escaped, for the log */
} ngx_http_mail_plus_auth_ctx_t;


static ngx_int_t ngx_http_mail_plus_auth_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_auth_parse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_auth_checked(ngx_http_request_t *r);
static void ngx_http_mail_plus_auth_cleanup(void *data);
static ngx_int_t ngx_http_mail_plus_auth_respond(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_auth_allow(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_auth_refuse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_auth_token_login(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static void ngx_http_mail_plus_auth_texts(ngx_mail_plus_auth_t *auth,
    ngx_uint_t result, ngx_str_t *status, ngx_str_t *code);
static void *ngx_http_mail_plus_auth_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mail_plus_auth_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_mail_plus_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mail_plus_auth_commands[] = {

    { ngx_string("mail_router_auth"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mail_router_auth_smtp_backend"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_auth_loc_conf_t, smtp_backend),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mail_plus_auth_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mail_plus_auth_create_loc_conf,  /* create location conf */
    ngx_http_mail_plus_auth_merge_loc_conf    /* merge location conf */
};


ngx_module_t  ngx_http_mail_plus_auth_module = {
    NGX_MODULE_V1,
    &ngx_http_mail_plus_auth_module_ctx,   /* module context */
    ngx_http_mail_plus_auth_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_mail_plus_protocols[] = {
    ngx_string("imap"),
    ngx_string("pop3"),
    ngx_string("smtp")
};


static ngx_int_t
ngx_http_mail_plus_auth_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_pool_cleanup_t             *cln;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_http_mail_plus_auth_ctx_t  *ctx;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http auth: request");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);
    if (mpcf == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_router_auth: no mail{} block is configured");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_auth_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->check = ngx_mail_plus_check_create(mpcf, r->connection->log);
    if (ctx->check == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_mail_plus_auth_cleanup;
    cln->data = ctx->check;

    rc = ngx_http_mail_plus_auth_parse(r, ctx);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http auth: request parsed: %i", rc);

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_mail_plus_auth_module);

    return ngx_http_mail_plus_check(r, ctx->check,
                                    ngx_http_mail_plus_auth_checked);
}


static ngx_int_t
ngx_http_mail_plus_auth_checked(ngx_http_request_t *r)
{
    ngx_http_mail_plus_auth_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_auth_module);

    return ngx_http_mail_plus_auth_respond(r, ctx);
}


static void
ngx_http_mail_plus_auth_cleanup(void *data)
{
    ngx_mail_plus_check_t *check = data;

    ngx_mail_plus_check_free(check);
}


/* the request's headers, then the check set from them */

static ngx_int_t
ngx_http_mail_plus_auth_parse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    char                                *err;
    ngx_str_t                            escaped;
    ngx_uint_t                           i;
    ngx_list_part_t                     *part;
    ngx_table_elt_t                     *h;
    ngx_mail_plus_check_t               *check;
    ngx_http_mail_plus_auth_request_t   *ar;
    ngx_http_mail_plus_auth_loc_conf_t  *alcf;

    ar = &ctx->req;
    check = ctx->check;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_mail_plus_auth_header(ar, &h[i].key, &h[i].value)
            != NGX_OK)
        {
            if (ngx_mail_plus_text_log(r->pool, &h[i].key, &escaped)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "mail_router_auth: repeated header \"%V\"",
                          &escaped);
            return NGX_DECLINED;
        }
    }

    err = NULL;

    switch (ngx_http_mail_plus_auth_request(ar, r->pool, &err)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_router_auth: %s", err);
        return NGX_DECLINED;

    default:
        return NGX_ERROR;
    }

    /*
     * the client's address is nginx's own text; the check's log lines show
     * it as it is
     */

    if (ngx_mail_plus_text_has_ctl(&ar->client)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_router_auth: a control character in Client-IP");
        return NGX_DECLINED;
    }

    /* what the client sent, as log lines may show it */

    if (ngx_mail_plus_text_log(r->pool, &ar->login, &ctx->login) != NGX_OK
        || ngx_mail_plus_text_log(r->pool, &ar->client, &ctx->client)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http auth: %V login \"%V\" from \"%V\"",
                   &ngx_http_mail_plus_protocols[ar->proto], &ctx->login,
                   &ctx->client);

    if (ar->none) {
        return ngx_mail_plus_check_set(check, ar->proto, &ar->login, NULL,
                                       &ar->client);
    }

    if (ar->token) {
        return ngx_mail_plus_check_set_token(check, ar->proto, &ar->login,
                                             &ar->password, ar->token,
                                             &ar->client);
    }

    if (ngx_mail_plus_check_set(check, ar->proto, &ar->login, &ar->password,
                                &ar->client)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * SMTP AUTH: a pool whose backend checks passwords is refused (and the
     * refusal counted) unless the operator passes the password on
     */

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_auth_module);

    if (ar->proto == NGX_MAIL_PLUS_SMTP && !alcf->smtp_backend) {
        check->router_only = 1;
    }

    /* APOP and CRAM-MD5: Auth-Pass is the client's digest of Auth-Salt */

    if (ar->digest != NGX_MAIL_AUTH_PLAIN) {
        return ngx_mail_plus_check_set_digest(check, ar->digest, &ar->salt);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_auth_respond(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_mail_plus_route_t  *route;

    route = &ctx->check->route;

    if (ctx->req.unsupported && route->status == NGX_MAIL_PLUS_ALLOW) {

        /* EXTERNAL needs what the router does not keep */

        route->status = NGX_MAIL_PLUS_DENY;
        route->delay = ctx->check->mpcf->auth_delay;
        ngx_str_set(&route->reason, "unsupported authentication method");
    }

    if (route->status == NGX_MAIL_PLUS_ALLOW) {
        rc = ngx_http_mail_plus_auth_allow(r, ctx);

    } else {
        rc = ngx_http_mail_plus_auth_refuse(r, ctx);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http auth: answer sent, route status %i",
                   route->status);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


/* the headers of an allowed login: the backend, and for a check the login */

static ngx_int_t
ngx_http_mail_plus_auth_allow(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    u_char                 *p;
    ngx_str_t               status, port;
    ngx_mail_plus_auth_t   *auth;
    ngx_mail_plus_route_t  *route;

    auth = &ctx->check->auth;
    route = &ctx->check->route;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mail router: \"%V\" to pool \"%V\" server %V:%d",
                   &ctx->login, &route->pool->name,
                   &route->server->host, (int) route->port);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    port.data = p;
    port.len = ngx_sprintf(p, "%ui", (ngx_uint_t) route->port) - p;

    ngx_str_set(&status, "OK");

    if (ngx_http_mail_plus_header(r, "Auth-Status", &status) != NGX_OK
        || ngx_http_mail_plus_header(r, "Auth-Server", &route->server->host)
           != NGX_OK
        || ngx_http_mail_plus_header(r, "Auth-Port", &port) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (route->token) {
        return ngx_http_mail_plus_auth_token_login(r, ctx);
    }

    if (auth->check
        && (ngx_http_mail_plus_header(r, "Auth-User", &route->login)
               != NGX_OK
            || ngx_http_mail_plus_header(r, "Auth-Pass", &auth->password)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * a token login's backend login, as the stock server will make it, by the
 * pool's "token_login": the user the token named and the token itself as
 * the password (Dovecot's oauth2 passdb takes a token as a password), or
 * Dovecot's master user ("user*master" and the master password)
 */

static ngx_int_t
ngx_http_mail_plus_auth_token_login(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    u_char                 *p;
    ngx_str_t               user, *pass;
    ngx_mail_plus_pool_t   *pool;
    ngx_mail_plus_route_t  *route;

    route = &ctx->check->route;
    pool = route->pool;

    user = route->login;
    pass = &ctx->check->auth.token;

    if (pool->token_login == NGX_MAIL_PLUS_TOKEN_LOGIN_MASTER) {
        user.len = route->login.len + 1 + pool->master_user.len;
        user.data = ngx_pnalloc(r->pool, user.len);
        if (user.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(user.data, route->login.data, route->login.len);
        *p++ = '*';
        ngx_memcpy(p, pool->master_user.data, pool->master_user.len);

        pass = &pool->master_password;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http auth: a token login, the backend login %s",
                   pool->token_login == NGX_MAIL_PLUS_TOKEN_LOGIN_MASTER
                   ? "as the master user" : "with the token");

    if (ngx_http_mail_plus_header(r, "Auth-User", &user) != NGX_OK
        || ngx_http_mail_plus_header(r, "Auth-Pass", pass) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * the headers of a denied or temporarily failed login, logged: the
 * status text of its protocol, for SMTP a code, and the wait of a denial
 */

static ngx_int_t
ngx_http_mail_plus_auth_refuse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    u_char                 *p;
    ngx_str_t               status, code, wait, sasl, *error;
    ngx_mail_plus_auth_t   *auth;
    ngx_mail_plus_route_t  *route;

    auth = &ctx->check->auth;
    route = &ctx->check->route;

    if (route->status == NGX_MAIL_PLUS_DENY) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mail router: %V login \"%V\" from %V denied: %V",
                      &ngx_http_mail_plus_protocols[auth->protocol],
                      &ctx->login, &ctx->client, &route->reason);

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "mail router: %V login \"%V\" from %V failed "
                      "temporarily: %V",
                      &ngx_http_mail_plus_protocols[auth->protocol],
                      &ctx->login, &ctx->client, &route->reason);
    }

    ngx_http_mail_plus_auth_texts(auth, route->status, &status, &code);

    if (ngx_http_mail_plus_header(r, "Auth-Status", &status) != NGX_OK) {
        return NGX_ERROR;
    }

    if (code.len
        && ngx_http_mail_plus_header(r, "Auth-Error-Code", &code)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (route->bad_token) {
        error = &ctx->check->mpcf->token->error;

        sasl.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(error->len));
        if (sasl.data == NULL) {
            return NGX_ERROR;
        }

        ngx_encode_base64(&sasl, error);

        if (ngx_http_mail_plus_header(r, "Auth-Error-SASL", &sasl) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (route->status == NGX_MAIL_PLUS_DENY) {
        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        wait.data = p;
        wait.len = ngx_sprintf(p, "%T", route->delay) - p;

        if (ngx_http_mail_plus_header(r, "Auth-Wait", &wait) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * the Auth-Status text of a denial or a temporary failure in the client's
 * protocol, and for SMTP the Auth-Error-Code (empty for the others)
 */

static void
ngx_http_mail_plus_auth_texts(ngx_mail_plus_auth_t *auth, ngx_uint_t result,
    ngx_str_t *status, ngx_str_t *code)
{
    ngx_str_null(code);

    if (result == NGX_MAIL_PLUS_DENY) {

        switch (auth->protocol) {

        case NGX_MAIL_PLUS_IMAP:
            ngx_str_set(status,
                        "[AUTHENTICATIONFAILED] Authentication failed.");
            return;

        case NGX_MAIL_PLUS_POP3:
            ngx_str_set(status, "[AUTH] Authentication failed.");
            return;

        default: /* NGX_MAIL_PLUS_SMTP */

            if (auth->check) {
                ngx_str_set(code, "535 5.7.8");
                ngx_str_set(status, "Authentication credentials invalid");

            } else {
                ngx_str_set(code, "550 5.1.1");
                ngx_str_set(status, "Recipient address rejected");
            }
        }

        return;
    }

    /* NGX_MAIL_PLUS_TEMPFAIL */

    switch (auth->protocol) {

    case NGX_MAIL_PLUS_IMAP:
        ngx_str_set(status, "[UNAVAILABLE] Temporary authentication failure.");
        return;

    case NGX_MAIL_PLUS_POP3:
        ngx_str_set(status, "[SYS/TEMP] Temporary authentication failure.");
        return;

    default: /* NGX_MAIL_PLUS_SMTP */

        if (auth->check) {
            ngx_str_set(code, "454 4.7.0");
            ngx_str_set(status, "Temporary authentication failure");

        } else {
            ngx_str_set(code, "451 4.3.0");
            ngx_str_set(status, "Temporary failure, try again later");
        }
    }
}


static void *
ngx_http_mail_plus_auth_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mail_plus_auth_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mail_plus_auth_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->smtp_backend = NGX_CONF_UNSET;

    return alcf;
}


static char *
ngx_http_mail_plus_auth_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_mail_plus_auth_loc_conf_t *prev = parent;
    ngx_http_mail_plus_auth_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->smtp_backend, prev->smtp_backend, 0);

    return NGX_CONF_OK;
}


static char *
ngx_http_mail_plus_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_mail_plus_auth_handler;

    return NGX_CONF_OK;
}
