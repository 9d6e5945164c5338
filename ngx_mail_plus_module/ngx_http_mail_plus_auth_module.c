
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_http_mail_plus.h"


/*
 * Answers nginx's auth_http protocol from the router of the mail{} block,
 * so that stock "protocol pop3/imap/smtp" servers need no external
 * authentication service.  Crypt password hashes are checked in a thread
 * pool: they cost milliseconds each, by design.
 */


typedef struct {
    ngx_mail_plus_check_t      *check;
    ngx_str_t                   raw_login;   /* as nginx escaped it */
    ngx_str_t                   client;
    unsigned                    unsupported:1;
} ngx_http_mail_plus_auth_ctx_t;


static ngx_int_t ngx_http_mail_plus_auth_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_auth_parse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_auth_unescape(ngx_http_request_t *r,
    ngx_str_t *value, ngx_str_t *result);
static ngx_int_t ngx_http_mail_plus_auth_checked(ngx_http_request_t *r);
static void ngx_http_mail_plus_auth_cleanup(void *data);
static ngx_int_t ngx_http_mail_plus_auth_respond(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static char *ngx_http_mail_plus_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mail_plus_auth_commands[] = {

    { ngx_string("mail_router_auth"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
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

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
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


static ngx_int_t
ngx_http_mail_plus_auth_parse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    ngx_str_t         method, user, pass, proto, rcpt, login, password, salt;
    ngx_uint_t        i, k, digest;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(&method);
    ngx_str_null(&user);
    ngx_str_null(&pass);
    ngx_str_null(&proto);
    ngx_str_null(&rcpt);
    ngx_str_null(&salt);

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

        if (h[i].key.len == sizeof("Auth-Method") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Auth-Method",
                               h[i].key.len) == 0)
        {
            method = h[i].value;

        } else if (h[i].key.len == sizeof("Auth-User") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Auth-User",
                                      h[i].key.len) == 0)
        {
            user = h[i].value;

        } else if (h[i].key.len == sizeof("Auth-Pass") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Auth-Pass",
                                      h[i].key.len) == 0)
        {
            pass = h[i].value;

        } else if (h[i].key.len == sizeof("Auth-Protocol") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Auth-Protocol",
                                      h[i].key.len) == 0)
        {
            proto = h[i].value;

        } else if (h[i].key.len == sizeof("Auth-SMTP-To") - 1
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Auth-SMTP-To",
                                      h[i].key.len) == 0)
        {
            rcpt = h[i].value;

        } else if (h[i].key.len == sizeof("Auth-Salt") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Auth-Salt",
                                      h[i].key.len) == 0)
        {
            salt = h[i].value;

        } else if (h[i].key.len == sizeof("Client-IP") - 1
                   && ngx_strncasecmp(h[i].key.data, (u_char *) "Client-IP",
                                      h[i].key.len) == 0)
        {
            ctx->client = h[i].value;
        }
    }

    for (k = 0; k < 3; k++) {
        if (proto.len == ngx_http_mail_plus_protocols[k].len
            && ngx_strncasecmp(proto.data,
                               ngx_http_mail_plus_protocols[k].data,
                               proto.len) == 0)
        {
            break;
        }
    }

    if (k == 3) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_router_auth: invalid Auth-Protocol \"%V\"",
                      &proto);
        return NGX_DECLINED;
    }

    /* k is NGX_MAIL_PLUS_IMAP, _POP3 or _SMTP */

    if (method.len == 4 && ngx_strncasecmp(method.data, (u_char *) "none", 4)
                           == 0)
    {
        /* unauthenticated SMTP: the first recipient's mailbox decides */

        if (rcpt.len >= 2 && rcpt.data[0] == '<'
            && rcpt.data[rcpt.len - 1] == '>')
        {
            rcpt.data++;
            rcpt.len -= 2;
        }

        ctx->raw_login = rcpt;

        return ngx_mail_plus_check_set(ctx->check, k, &rcpt, NULL,
                                       &ctx->client);
    }

    digest = NGX_MAIL_AUTH_PLAIN;

    if (method.len == 4
        && ngx_strncasecmp(method.data, (u_char *) "apop", 4) == 0)
    {
        digest = NGX_MAIL_AUTH_APOP;

    } else if (method.len == 8
               && ngx_strncasecmp(method.data, (u_char *) "cram-md5", 8)
                  == 0)
    {
        digest = NGX_MAIL_AUTH_CRAM_MD5;

    } else if (!(method.len == 5
                 && ngx_strncasecmp(method.data, (u_char *) "plain", 5) == 0)
               && !(method.len == 5
                    && ngx_strncasecmp(method.data, (u_char *) "login", 5)
                       == 0))
    {
        ctx->unsupported = 1;
    }

    ctx->raw_login = user;

    if (ngx_http_mail_plus_auth_unescape(r, &user, &login) != NGX_OK
        || ngx_http_mail_plus_auth_unescape(r, &pass, &password) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_mail_plus_check_set(ctx->check, k, &login, &password,
                                &ctx->client)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* APOP and CRAM-MD5: Auth-Pass is the client's digest of Auth-Salt */

    if (digest != NGX_MAIL_AUTH_PLAIN) {
        return ngx_mail_plus_check_set_digest(ctx->check, digest, &salt);
    }

    return NGX_OK;
}


/* nginx escapes Auth-User and Auth-Pass */

static ngx_int_t
ngx_http_mail_plus_auth_unescape(ngx_http_request_t *r, ngx_str_t *value,
    ngx_str_t *result)
{
    u_char  *p, *src;

    p = ngx_pnalloc(r->pool, value->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    result->data = p;
    src = value->data;

    ngx_unescape_uri(&p, &src, value->len, 0);

    result->len = p - result->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_auth_respond(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_str_t               status, code, wait, port;
    ngx_mail_plus_auth_t   *auth;
    ngx_mail_plus_route_t  *route;

    auth = &ctx->check->auth;
    route = &ctx->check->route;

    if (ctx->unsupported && route->status == NGX_MAIL_PLUS_ALLOW) {

        /* EXTERNAL needs what the router does not keep */

        route->status = NGX_MAIL_PLUS_DENY;
        route->delay = ctx->check->mpcf->auth_delay;
        ngx_str_set(&route->reason, "unsupported authentication method");
    }

    ngx_str_null(&code);
    ngx_str_null(&wait);

    switch (route->status) {

    case NGX_MAIL_PLUS_ALLOW:

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "mail router: \"%V\" to pool \"%V\" server %V:%d",
                       &ctx->raw_login, &route->pool->name,
                       &route->server->host, (int) route->port);

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        port.data = p;
        port.len = ngx_sprintf(p, "%ui", (ngx_uint_t) route->port) - p;

        ngx_str_set(&status, "OK");

        if (ngx_http_mail_plus_header(r, "Auth-Status", &status)
               != NGX_OK
            || ngx_http_mail_plus_header(r, "Auth-Server",
                                         &route->server->host)
               != NGX_OK
            || ngx_http_mail_plus_header(r, "Auth-Port", &port)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (auth->check
            && (ngx_http_mail_plus_header(r, "Auth-User", &route->login)
                   != NGX_OK
                || ngx_http_mail_plus_header(r, "Auth-Pass", &auth->password)
                   != NGX_OK))
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        goto send;

    case NGX_MAIL_PLUS_DENY:

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mail router: %V login \"%V\" from %V denied: %V",
                      &ngx_http_mail_plus_protocols[auth->protocol],
                      &ctx->raw_login, &ctx->client, &route->reason);

        switch (auth->protocol) {

        case NGX_MAIL_PLUS_IMAP:
            ngx_str_set(&status,
                        "[AUTHENTICATIONFAILED] Authentication failed.");
            break;

        case NGX_MAIL_PLUS_POP3:
            ngx_str_set(&status, "[AUTH] Authentication failed.");
            break;

        default: /* NGX_MAIL_PLUS_SMTP */

            if (auth->check) {
                ngx_str_set(&code, "535 5.7.8");
                ngx_str_set(&status, "Authentication credentials invalid");

            } else {
                ngx_str_set(&code, "550 5.1.1");
                ngx_str_set(&status, "Recipient address rejected");
            }
        }

        break;

    default: /* NGX_MAIL_PLUS_TEMPFAIL */

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "mail router: %V login \"%V\" from %V failed "
                      "temporarily: %V",
                      &ngx_http_mail_plus_protocols[auth->protocol],
                      &ctx->raw_login, &ctx->client, &route->reason);

        switch (auth->protocol) {

        case NGX_MAIL_PLUS_IMAP:
            ngx_str_set(&status,
                        "[UNAVAILABLE] Temporary authentication failure.");
            break;

        case NGX_MAIL_PLUS_POP3:
            ngx_str_set(&status,
                        "[SYS/TEMP] Temporary authentication failure.");
            break;

        default: /* NGX_MAIL_PLUS_SMTP */
            ngx_str_set(&code, "451 4.4.1");
            ngx_str_set(&status, "Temporary authentication failure");
        }
    }

    if (ngx_http_mail_plus_header(r, "Auth-Status", &status) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (code.len
        && ngx_http_mail_plus_header(r, "Auth-Error-Code", &code)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (route->status == NGX_MAIL_PLUS_DENY) {
        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        wait.data = p;
        wait.len = ngx_sprintf(p, "%T", route->delay) - p;

        if (ngx_http_mail_plus_header(r, "Auth-Wait", &wait) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

send:

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
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
