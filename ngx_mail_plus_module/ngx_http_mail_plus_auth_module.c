
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"


/*
 * Answers nginx's auth_http protocol from the router of the mail{} block,
 * so that stock "protocol pop3/imap/smtp" servers need no external
 * authentication service.  Crypt password hashes are checked in a thread
 * pool: they cost milliseconds each, by design.
 */


typedef struct {
#if (NGX_THREADS)
    ngx_thread_pool_t          *thread_pool;
#endif
    ngx_flag_t                  enable;
} ngx_http_mail_plus_auth_loc_conf_t;


typedef struct {
    ngx_mail_plus_auth_t        auth;
    ngx_mail_plus_route_t       route;
    ngx_str_t                   raw_login;   /* as nginx escaped it */
    ngx_str_t                   client;
    ngx_int_t                   rc;
    void                       *crypt_data;
    unsigned                    unsupported:1;
} ngx_http_mail_plus_auth_ctx_t;


static ngx_int_t ngx_http_mail_plus_auth_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_auth_parse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx, ngx_uint_t *protocol);
static ngx_int_t ngx_http_mail_plus_auth_unescape(ngx_http_request_t *r,
    ngx_str_t *value, ngx_str_t *result);
#if (NGX_THREADS)
static void ngx_http_mail_plus_auth_thread(void *data, ngx_log_t *log);
static void ngx_http_mail_plus_auth_thread_done(ngx_event_t *ev);
#endif
static ngx_int_t ngx_http_mail_plus_auth_respond(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_auth_header(ngx_http_request_t *r,
    char *name, ngx_str_t *value);
static void *ngx_http_mail_plus_auth_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mail_plus_auth_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_mail_plus_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mail_plus_auth_commands[] = {

    { ngx_string("mail_router_auth"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
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

    ngx_http_mail_plus_auth_create_loc_conf, /* create location configuration */
    ngx_http_mail_plus_auth_merge_loc_conf  /* merge location configuration */
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
    ngx_int_t                            rc;
    ngx_uint_t                           protocol;
    ngx_mail_plus_main_conf_t           *mpcf;
    ngx_http_mail_plus_auth_ctx_t       *ctx;
#if (NGX_THREADS)
    ngx_thread_task_t                   *task;
    ngx_http_mail_plus_auth_loc_conf_t  *alcf;
#endif

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

    rc = ngx_http_mail_plus_auth_parse(r, ctx, &protocol);

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_mail_plus_router_route(mpcf, &ctx->auth, &ctx->route, r->pool,
                                   r->connection->log)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->unsupported && ctx->route.status == NGX_MAIL_PLUS_ALLOW) {

        /* APOP, CRAM-MD5 and EXTERNAL need what the router does not keep */

        ctx->route.status = NGX_MAIL_PLUS_DENY;
        ctx->route.verify = 0;
        ngx_str_set(&ctx->route.reason, "unsupported authentication method");
    }

    if (!ctx->route.verify) {
        return ngx_http_mail_plus_auth_respond(r, ctx);
    }

    if (ctx->route.user->scheme != NGX_MAIL_PLUS_SCHEME_CRYPT) {
        rc = ngx_mail_plus_password_check(ctx->route.user,
                                          &ctx->auth.password, r->pool,
                                          NULL);
        ngx_mail_plus_router_verified(mpcf, &ctx->auth, &ctx->route, rc,
                                      r->connection->log);
        return ngx_http_mail_plus_auth_respond(r, ctx);
    }

#if (NGX_THREADS)

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_auth_module);

    task = ngx_thread_task_alloc(r->pool, 0);
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->crypt_data = ngx_palloc(r->pool,
                                 ngx_mail_plus_password_crypt_size());
    if (ctx->crypt_data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_mail_plus_auth_module);

    task->ctx = r;
    task->handler = ngx_http_mail_plus_auth_thread;
    task->event.data = r;
    task->event.handler = ngx_http_mail_plus_auth_thread_done;

    if (ngx_thread_task_post(alcf->thread_pool, task) == NGX_OK) {
        r->main->blocked++;
        r->main->count++;
        r->aio = 1;
        return NGX_DONE;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "mail_router_auth: thread pool busy, checking inline");

#else

    ctx->crypt_data = ngx_palloc(r->pool,
                                 ngx_mail_plus_password_crypt_size());
    if (ctx->crypt_data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

#endif

    rc = ngx_mail_plus_password_check(ctx->route.user, &ctx->auth.password,
                                      NULL, ctx->crypt_data);
    ngx_mail_plus_router_verified(mpcf, &ctx->auth, &ctx->route, rc,
                                  r->connection->log);

    return ngx_http_mail_plus_auth_respond(r, ctx);
}


static ngx_int_t
ngx_http_mail_plus_auth_parse(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx, ngx_uint_t *protocol)
{
    ngx_str_t         method, user, pass, proto, rcpt;
    ngx_uint_t        i, k;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(&method);
    ngx_str_null(&user);
    ngx_str_null(&pass);
    ngx_str_null(&proto);
    ngx_str_null(&rcpt);

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

    *protocol = k;
    ctx->auth.protocol = k;   /* NGX_MAIL_PLUS_IMAP, _POP3, _SMTP */
    ctx->auth.client = ctx->client;

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
        ctx->auth.login = rcpt;
        ctx->auth.check = 0;

        return NGX_OK;
    }

    if (!(method.len == 5
          && ngx_strncasecmp(method.data, (u_char *) "plain", 5) == 0)
        && !(method.len == 5
             && ngx_strncasecmp(method.data, (u_char *) "login", 5) == 0))
    {
        ctx->unsupported = 1;
    }

    ctx->raw_login = user;
    ctx->auth.check = 1;

    if (ngx_http_mail_plus_auth_unescape(r, &user, &ctx->auth.login)
        != NGX_OK
        || ngx_http_mail_plus_auth_unescape(r, &pass, &ctx->auth.password)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* nginx escapes Auth-User and Auth-Pass; the password is NUL-terminated */

static ngx_int_t
ngx_http_mail_plus_auth_unescape(ngx_http_request_t *r, ngx_str_t *value,
    ngx_str_t *result)
{
    u_char  *p, *src;

    p = ngx_pnalloc(r->pool, value->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    result->data = p;
    src = value->data;

    ngx_unescape_uri(&p, &src, value->len, 0);

    result->len = p - result->data;
    *p = '\0';

    return NGX_OK;
}


#if (NGX_THREADS)

static void
ngx_http_mail_plus_auth_thread(void *data, ngx_log_t *log)
{
    ngx_http_request_t *r = data;

    ngx_http_mail_plus_auth_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_auth_module);

    ctx->rc = ngx_mail_plus_password_check(ctx->route.user,
                                           &ctx->auth.password, NULL,
                                           ctx->crypt_data);
}


static void
ngx_http_mail_plus_auth_thread_done(ngx_event_t *ev)
{
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_http_mail_plus_auth_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_auth_module);

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    ngx_mail_plus_router_verified(mpcf, &ctx->auth, &ctx->route, ctx->rc,
                                  c->log);

    ngx_http_finalize_request(r, ngx_http_mail_plus_auth_respond(r, ctx));
    ngx_http_run_posted_requests(c);
}

#endif


static ngx_int_t
ngx_http_mail_plus_auth_respond(ngx_http_request_t *r,
    ngx_http_mail_plus_auth_ctx_t *ctx)
{
    u_char                 *p;
    ngx_int_t               rc;
    ngx_str_t               status, code, wait, port;
    ngx_mail_plus_route_t  *route;

    route = &ctx->route;

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

        if (ngx_http_mail_plus_auth_header(r, "Auth-Status", &status)
               != NGX_OK
            || ngx_http_mail_plus_auth_header(r, "Auth-Server",
                                              &route->server->host)
               != NGX_OK
            || ngx_http_mail_plus_auth_header(r, "Auth-Port", &port)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->auth.check
            && (ngx_http_mail_plus_auth_header(r, "Auth-User", &route->login)
                   != NGX_OK
                || ngx_http_mail_plus_auth_header(r, "Auth-Pass",
                                                  &ctx->auth.password)
                   != NGX_OK))
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        goto send;

    case NGX_MAIL_PLUS_DENY:

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "mail router: %V login \"%V\" from %V denied: %V",
                      &ngx_http_mail_plus_protocols[ctx->auth.protocol],
                      &ctx->raw_login, &ctx->client, &route->reason);

        switch (ctx->auth.protocol) {

        case NGX_MAIL_PLUS_IMAP:
            ngx_str_set(&status,
                        "[AUTHENTICATIONFAILED] Authentication failed.");
            break;

        case NGX_MAIL_PLUS_POP3:
            ngx_str_set(&status, "[AUTH] Authentication failed.");
            break;

        default: /* NGX_MAIL_PLUS_SMTP */

            if (ctx->auth.check) {
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
                      &ngx_http_mail_plus_protocols[ctx->auth.protocol],
                      &ctx->raw_login, &ctx->client, &route->reason);

        switch (ctx->auth.protocol) {

        case NGX_MAIL_PLUS_IMAP:
            ngx_str_set(&status,
                        "[UNAVAILABLE] Temporary authentication failure.");
            break;

        case NGX_MAIL_PLUS_POP3:
            ngx_str_set(&status,
                        "[SYS/TEMP] Temporary authentication failure.");
            break;

        default: /* NGX_MAIL_PLUS_SMTP */
            ngx_str_set(&code, "451 4.3.0");
            ngx_str_set(&status, "Temporary authentication failure");
        }
    }

    if (ngx_http_mail_plus_auth_header(r, "Auth-Status", &status) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (code.len
        && ngx_http_mail_plus_auth_header(r, "Auth-Error-Code", &code)
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
        wait.len = ngx_sprintf(p, "%T",
                               ngx_mail_plus_get_main_conf(
                                   (ngx_cycle_t *) ngx_cycle)->auth_delay)
                   - p;

        if (ngx_http_mail_plus_auth_header(r, "Auth-Wait", &wait) != NGX_OK) {
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


static ngx_int_t
ngx_http_mail_plus_auth_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


static void *
ngx_http_mail_plus_auth_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mail_plus_auth_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mail_plus_auth_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->enable = NGX_CONF_UNSET;

    return alcf;
}


static char *
ngx_http_mail_plus_auth_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_mail_plus_auth_loc_conf_t *prev = parent;
    ngx_http_mail_plus_auth_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

#if (NGX_THREADS)
    if (conf->thread_pool == NULL) {
        conf->thread_pool = prev->thread_pool;
    }
#endif

    return NGX_CONF_OK;
}


static char *
ngx_http_mail_plus_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mail_plus_auth_loc_conf_t *alcf = conf;

    ngx_str_t                 *value, name;
    ngx_http_core_loc_conf_t  *clcf;

    if (alcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    alcf->enable = 1;

    value = cf->args->elts;
    ngx_str_null(&name);

    if (cf->args->nelts == 2) {
        if (ngx_strncmp(value[1].data, "threads=", 8) != 0
            || value[1].len == 8)
        {
            return "has an invalid parameter, it must be \"threads=NAME\"";
        }

        name.data = value[1].data + 8;
        name.len = value[1].len - 8;
    }

#if (NGX_THREADS)
    alcf->thread_pool = ngx_thread_pool_add(cf, name.len ? &name : NULL);
    if (alcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }
#else
    if (name.len) {
        return "has \"threads=\", but nginx is built without threads";
    }
#endif

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mail_plus_auth_handler;

    return NGX_CONF_OK;
}
