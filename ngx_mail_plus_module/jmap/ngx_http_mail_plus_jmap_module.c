
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include <ngx_md5.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_token.h"
#include "ngx_http_mail_plus.h"
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_blob.h"


/*
 * The JMAP endpoint's HTTP module (RFC 8620): "mail_plus_jmap" in a prefix
 * location ending in "/" serves <prefix>session (GET), <prefix>api
 * (POST), <prefix>upload/{accountId}/ (POST) and
 * <prefix>download/{accountId}/{blobId}/{name} (GET,
 * ngx_http_mail_plus_jmap_blob.c).  Every request authenticates, as an
 * IMAP login of the mail{} block's router (throttling, lockout, logging):
 * HTTP Basic, or a bearer token when the block verifies tokens.  The
 * route the router answered (pool, server, port, backend login) stays in
 * the request's context for the methods.  Answers and errors are JSON;
 * errors are problem details (RFC 7807).
 */


/* Retry-After of a temporary failure, in seconds */

#define NGX_HTTP_MAIL_PLUS_JMAP_RETRY  "60"


static ngx_int_t ngx_http_mail_plus_jmap_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_jmap_auth(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_mail_plus_main_conf_t *mpcf);
static ngx_int_t ngx_http_mail_plus_jmap_checked(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_jmap_route(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_mail_plus_check_t *check);
static ngx_int_t ngx_http_mail_plus_jmap_refused(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_mail_plus_check_t *check);
static void ngx_http_mail_plus_jmap_delay_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_mail_plus_jmap_unauthorized(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_jmap_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *detail);
static void ngx_http_mail_plus_jmap_cleanup(void *data);
static void *ngx_http_mail_plus_jmap_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mail_plus_jmap_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_mail_plus_jmap(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mail_plus_jmap_expire(ngx_conf_t *cf, void *post,
    void *data);


static ngx_conf_post_handler_pt  ngx_http_mail_plus_jmap_expire_p =
    ngx_http_mail_plus_jmap_expire;

static ngx_path_init_t  ngx_http_mail_plus_jmap_upload_temp_path = {
    ngx_string("jmap_upload"), { 0, 0, 0 }
};


static ngx_command_t  ngx_http_mail_plus_jmap_commands[] = {

    { ngx_string("mail_plus_jmap"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_jmap,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mail_plus_jmap_max_size_request"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_size_request),
      NULL },

    { ngx_string("mail_plus_jmap_max_calls_in_request"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_calls),
      NULL },

    { ngx_string("mail_plus_jmap_max_objects_in_get"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_objects_in_get),
      NULL },

    { ngx_string("mail_plus_jmap_max_query_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_query_limit),
      NULL },

    { ngx_string("mail_plus_jmap_max_objects_in_set"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_objects_in_set),
      NULL },

    { ngx_string("mail_plus_jmap_max_size_upload"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_size_upload),
      NULL },

    { ngx_string("mail_plus_jmap_max_concurrent_requests"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, max_concurrent),
      NULL },

    { ngx_string("mail_plus_jmap_upload_path"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_path_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, upload_path),
      NULL },

    { ngx_string("mail_plus_jmap_upload_expire"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, upload_expire),
      &ngx_http_mail_plus_jmap_expire_p },

    { ngx_string("mail_plus_jmap_upload_quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, upload_quota),
      NULL },

    { ngx_string("mail_plus_jmap_read_ahead"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, read_ahead),
      NULL },

    { ngx_string("mail_plus_jmap_imap_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, imap.timeout),
      NULL },

    { ngx_string("mail_plus_jmap_imap_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, imap.keepalive),
      NULL },

    { ngx_string("mail_plus_jmap_imap_keepalive_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, imap.keepalive_timeout),
      NULL },

    { ngx_string("mail_plus_jmap_imap_max_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_jmap_loc_conf_t, imap.limits.total),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mail_plus_jmap_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mail_plus_jmap_create_loc_conf,
    ngx_http_mail_plus_jmap_merge_loc_conf
};


ngx_module_t  ngx_http_mail_plus_jmap_module = {
    NGX_MODULE_V1,
    &ngx_http_mail_plus_jmap_module_ctx,   /* module context */
    ngx_http_mail_plus_jmap_commands,      /* module directives */
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


static ngx_str_t  ngx_http_mail_plus_jmap_session_path = ngx_string("session");
static ngx_str_t  ngx_http_mail_plus_jmap_api_path = ngx_string("api");
static ngx_str_t  ngx_http_mail_plus_jmap_upload_path = ngx_string("upload/");
static ngx_str_t  ngx_http_mail_plus_jmap_download_path =
    ngx_string("download/");


/* the URL, its method, then the login */

static ngx_int_t
ngx_http_mail_plus_jmap_handler(ngx_http_request_t *r)
{
    ngx_str_t                            tail, allow;
    ngx_uint_t                           api, upload, download;
    ngx_pool_cleanup_t                  *cln;
    ngx_mail_plus_main_conf_t           *mpcf;
    ngx_http_mail_plus_jmap_ctx_t       *ctx;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    if (r->uri.len < jlcf->prefix.len) {
        return ngx_http_mail_plus_jmap_error(r, NGX_HTTP_NOT_FOUND,
                                             "no such resource");
    }

    tail.data = r->uri.data + jlcf->prefix.len;
    tail.len = r->uri.len - jlcf->prefix.len;

    upload = 0;
    download = 0;

    if (tail.len == ngx_http_mail_plus_jmap_api_path.len
        && ngx_strncmp(tail.data, "api", 3) == 0)
    {
        api = 1;
        ngx_str_set(&allow, "POST");

    } else if (tail.len > ngx_http_mail_plus_jmap_upload_path.len
               && ngx_strncmp(tail.data, "upload/", 7) == 0)
    {
        api = 0;
        upload = 1;
        ngx_str_set(&allow, "POST");

    } else if (tail.len > ngx_http_mail_plus_jmap_download_path.len
               && ngx_strncmp(tail.data, "download/", 9) == 0)
    {
        api = 0;
        download = 1;
        ngx_str_set(&allow, "GET, HEAD");

    } else if (tail.len == ngx_http_mail_plus_jmap_session_path.len
               && ngx_strncmp(tail.data, "session", 7) == 0)
    {
        api = 0;
        ngx_str_set(&allow, "GET, HEAD");

    } else {
        return ngx_http_mail_plus_jmap_error(r, NGX_HTTP_NOT_FOUND,
                                             "no such resource (the JMAP "
                                             "resources are \"session\", "
                                             "\"api\", \"upload/\" and "
                                             "\"download/\")");
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: request for the %s",
                   api ? "API" : upload ? "upload" : download ? "download"
                                                              : "session");

    if (((api || upload) && !(r->method & NGX_HTTP_POST))
        || (!api && !upload
            && !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))))
    {
        if (ngx_http_mail_plus_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_mail_plus_jmap_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method not allowed");
    }

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    if (mpcf == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_plus_jmap: no mail{} block with a router "
                      "is configured");
        return ngx_http_mail_plus_jmap_error(r,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR,
                                             "no router is configured");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_jmap_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->api = api;
    ctx->upload = upload;
    ctx->download = download;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_mail_plus_jmap_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_mail_plus_jmap_module);

    return ngx_http_mail_plus_jmap_auth(r, ctx, mpcf);
}


/* HTTP Basic as an IMAP login, or a bearer token as a token login */

static ngx_int_t
ngx_http_mail_plus_jmap_auth(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_mail_plus_main_conf_t *mpcf)
{
    ngx_int_t               rc;
    ngx_str_t               token, user, *auth;
    ngx_mail_plus_check_t  *check;

    auth = r->headers_in.authorization ? &r->headers_in.authorization->value
                                       : NULL;

    if (auth && auth->len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(auth->data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1)
           == 0)
    {
        if (!ngx_mail_plus_token_enabled(mpcf)) {
            return ngx_http_mail_plus_jmap_unauthorized(r);
        }

        token.data = auth->data + sizeof("Bearer ") - 1;
        token.len = auth->len - (sizeof("Bearer ") - 1);

        while (token.len && token.data[0] == ' ') {
            token.data++;
            token.len--;
        }

        ngx_str_null(&user);

        ctx->token = 1;

    } else if (ngx_http_auth_basic_user(r) != NGX_OK) {
        return ngx_http_mail_plus_jmap_unauthorized(r);
    }

    check = ngx_mail_plus_check_create(mpcf, r->connection->log);
    if (check == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->check = check;

    if (ctx->token) {
        rc = ngx_mail_plus_check_set_token(check, NGX_MAIL_PLUS_IMAP, &user,
                                           &token,
                                           NGX_MAIL_PLUS_SASL_OAUTHBEARER,
                                           &r->connection->addr_text);

    } else {
        rc = ngx_mail_plus_check_set(check, NGX_MAIL_PLUS_IMAP,
                                     &r->headers_in.user,
                                     &r->headers_in.passwd,
                                     &r->connection->addr_text);

        /* a pool whose backends check passwords cannot be asked here */

        check->router_only = 1;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: %s login to the router",
                   ctx->token ? "token" : "password");

    return ngx_http_mail_plus_check(r, check,
                                    ngx_http_mail_plus_jmap_checked);
}


static ngx_int_t
ngx_http_mail_plus_jmap_checked(ngx_http_request_t *r)
{
    ngx_int_t                            rc;
    ngx_str_t                            tail;
    ngx_mail_plus_check_t               *check;
    ngx_mail_plus_route_t               *route;
    ngx_http_mail_plus_jmap_ctx_t       *ctx;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_jmap_module);
    check = ctx->check;
    route = &check->route;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: login checked, route status %ui, token %ui",
                   route->status, (ngx_uint_t) route->token);

    if (route->status != NGX_MAIL_PLUS_ALLOW
        || (!route->token && route->pool->auth != NGX_MAIL_PLUS_AUTH_ROUTER))
    {
        return ngx_http_mail_plus_jmap_refused(r, ctx, check);
    }

    rc = ngx_http_mail_plus_jmap_route(r, ctx, check);

    ngx_mail_plus_check_free(check);
    ctx->check = NULL;

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->api) {
        return ngx_http_mail_plus_jmap_api(r, ctx);
    }

    if (ctx->upload || ctx->download) {
        jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

        tail.data = r->uri.data + jlcf->prefix.len;
        tail.len = r->uri.len - jlcf->prefix.len;

        return ctx->upload ? ngx_http_mail_plus_jmap_upload(r, ctx, &tail)
                           : ngx_http_mail_plus_jmap_download(r, ctx, &tail);
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_http_mail_plus_jmap_session(r, ctx);
}


/*
 * the route, kept in the request's pool for the methods, and the account:
 * "a" and the hex of the first 8 bytes of the MD5 of the login in lower
 * case, the same for every session of the user
 */

static ngx_int_t
ngx_http_mail_plus_jmap_route(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_mail_plus_check_t *check)
{
    u_char                 *lc, digest[16];
    ngx_md5_t               md5;
    ngx_str_t               logged, *secret;
    ngx_mail_plus_route_t  *route;

    ctx->username.data = ngx_pstrdup(r->pool, &check->auth.login);
    ctx->backend_login.data = ngx_pstrdup(r->pool, &check->route.login);
    lc = ngx_pnalloc(r->pool, check->auth.login.len + 1);
    ctx->account_id.data = ngx_pnalloc(r->pool, 1 + 16);

    if (ctx->username.data == NULL || ctx->backend_login.data == NULL
        || lc == NULL || ctx->account_id.data == NULL)
    {
        return NGX_ERROR;
    }

    ctx->username.len = check->auth.login.len;
    ctx->backend_login.len = check->route.login.len;
    ctx->pool = check->route.pool;
    ctx->server = check->route.server;
    ctx->port = check->route.port;

    /* the route outlives the check, for failover; the secret, the login */

    route = ngx_palloc(r->pool, sizeof(ngx_mail_plus_route_t));
    if (route == NULL) {
        return NGX_ERROR;
    }

    *route = check->route;
    route->key.data = ngx_pstrdup(r->pool, &check->route.key);
    route->login = ctx->backend_login;
    ngx_str_null(&route->reason);
    route->user = NULL;

    if (route->key.len && route->key.data == NULL) {
        return NGX_ERROR;
    }

    ctx->route = route;

    secret = ctx->token ? &check->auth.token : &check->auth.password;

    ctx->secret.len = secret->len;
    ctx->secret.data = ngx_pstrdup(r->pool, secret);

    if (secret->len && ctx->secret.data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(lc, ctx->username.data, ctx->username.len);

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, lc, ctx->username.len);
    ngx_md5_final(digest, &md5);

    ctx->account_id.data[0] = 'a';
    ngx_hex_dump(ctx->account_id.data + 1, digest, 8);
    ctx->account_id.len = 1 + 16;

    if (ngx_mail_plus_text_log(r->pool, &ctx->username, &logged) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: login \"%V\" allowed, account %V, port %d",
                   &logged, &ctx->account_id, (int) ctx->port);

    return NGX_OK;
}


/* a refusal: 503 when it may pass later, else 401 after the router's delay */

static ngx_int_t
ngx_http_mail_plus_jmap_refused(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_mail_plus_check_t *check)
{
    time_t                  delay;
    ngx_str_t               login, value;
    ngx_uint_t              status;
    ngx_mail_plus_route_t  *route;

    route = &check->route;

    if (route->reason.len == 0) {
        ngx_str_set(&route->reason, "the pool does not check passwords");
    }

    if (ngx_mail_plus_text_log(r->pool, &check->auth.login, &login)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "http jmap: login \"%V\" failed: %V", &login,
                  &route->reason);

    status = route->status;
    delay = route->delay;

    ngx_mail_plus_check_free(check);
    ctx->check = NULL;

    if (status == NGX_MAIL_PLUS_TEMPFAIL) {
        ngx_str_set(&value, NGX_HTTP_MAIL_PLUS_JMAP_RETRY);

        if (ngx_http_mail_plus_header(r, "Retry-After", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_mail_plus_jmap_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "temporary authentication failure");
    }

    if (delay == 0) {
        return ngx_http_mail_plus_jmap_unauthorized(r);
    }

    ctx->delay.handler = ngx_http_mail_plus_jmap_delay_handler;
    ctx->delay.data = r;
    ctx->delay.log = r->connection->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: login failed, answer after %T s", delay);

    ngx_add_timer(&ctx->delay, (ngx_msec_t) delay * 1000);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_mail_plus_jmap_delay_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http jmap: delay timer fired, 401 sent");

    ngx_http_finalize_request(r, ngx_http_mail_plus_jmap_unauthorized(r));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_mail_plus_jmap_unauthorized(ngx_http_request_t *r)
{
    ngx_str_t                   value;
    ngx_mail_plus_main_conf_t  *mpcf;

    ngx_str_set(&value, "Basic realm=\"mail\", charset=\"UTF-8\"");

    if (ngx_http_mail_plus_header(r, "WWW-Authenticate", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    if (mpcf && ngx_mail_plus_token_enabled(mpcf)) {
        ngx_str_set(&value, "Bearer realm=\"mail\"");

        if (ngx_http_mail_plus_header(r, "WWW-Authenticate", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_mail_plus_jmap_error(r, NGX_HTTP_UNAUTHORIZED,
                                         "authentication required");
}


/* an error of HTTP's own: a problem of type "about:blank" */

static ngx_int_t
ngx_http_mail_plus_jmap_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    ngx_http_mail_plus_jmap_problem_t  problem;

    problem.type = NGX_HTTP_MAIL_PLUS_JMAP_OK;
    problem.detail = detail;
    problem.limit = NULL;

    return ngx_http_mail_plus_jmap_problem(r, status, &problem);
}


/*
 * problem details; a body not read is discarded, or the connection
 * closed after the answer
 */

ngx_int_t
ngx_http_mail_plus_jmap_problem(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_mail_plus_jmap_problem_t *problem)
{
    json_t      *json;
    ngx_int_t    rc;
    const char  *type;

    static const char  *types[] = {
        "about:blank",
        "urn:ietf:params:jmap:error:notJSON",
        "urn:ietf:params:jmap:error:notRequest",
        "urn:ietf:params:jmap:error:unknownCapability",
        "urn:ietf:params:jmap:error:limit"
    };

    if (r->request_body == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

    } else if (r->reading_body) {
        r->keepalive = 0;
    }

    type = types[problem->type];

    json = json_pack("{sssiss}", "type", type, "status", (int) status,
                     "detail", problem->detail);

    if (json && problem->limit
        && json_object_set_new(json, "limit", json_string(problem->limit))
           != 0)
    {
        json_decref(json);
        json = NULL;
    }

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: problem %ui \"%s\"", status, type);

    rc = ngx_http_mail_plus_jmap_send_json(r, status,
                                           "application/problem+json", json);

    json_decref(json);

    return rc;
}


/*
 * an absolute URL under the location: the scheme, the Host the client
 * sent (a host name or an address, and a port: nothing else), the prefix
 */

ngx_int_t
ngx_http_mail_plus_jmap_url(ngx_http_request_t *r, const char *tail,
    ngx_str_t *url)
{
    u_char                              *p, ch;
    size_t                               len;
    ngx_str_t                           *host, scheme;
    ngx_uint_t                           i;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    if (r->headers_in.host == NULL) {
        return NGX_DECLINED;
    }

    host = &r->headers_in.host->value;

    if (host->len == 0 || host->len > 255) {
        return NGX_DECLINED;
    }

    for (i = 0; i < host->len; i++) {
        ch = host->data[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
              || ch == ':' || ch == '[' || ch == ']'))
        {
            return NGX_DECLINED;
        }
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
    } else
#endif
    {
        ngx_str_set(&scheme, "http://");
    }

    len = scheme.len + host->len + jlcf->prefix.len + ngx_strlen(tail);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    url->data = p;
    url->len = ngx_sprintf(p, "%V%V%V%s", &scheme, host, &jlcf->prefix, tail)
               - p;

    return NGX_OK;
}


/* the request's IMAP session, opened at the first call that asks */

ngx_mail_plus_imap_t *
ngx_http_mail_plus_jmap_imap(ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    ngx_http_request_t                  *r;
    ngx_mail_plus_imap_target_t          target;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    if (ctx->imap) {
        return ctx->imap;
    }

    r = ctx->request;
    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    target.route = ctx->route;
    target.login = ctx->backend_login;
    target.secret = ctx->secret;
    target.token = ctx->token;
    target.log = r->connection->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: IMAP session for \"%V\"", &ctx->username);

    ctx->imap = ngx_mail_plus_imap_open(&jlcf->imap, &target);

    return ctx->imap;
}


static void
ngx_http_mail_plus_jmap_cleanup(void *data)
{
    ngx_http_mail_plus_jmap_ctx_t  *ctx = data;

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->delay.timer_set) {
        ngx_del_timer(&ctx->delay);
    }

    ngx_http_mail_plus_jmap_api_cleanup(ctx);

    if (ctx->imap) {

        /* kept if idle and unbroken; a request gone mid-command closes it */

        ngx_mail_plus_imap_release(ctx->imap, 1);
        ctx->imap = NULL;
    }

    if (ctx->secret.len) {
        ngx_explicit_memzero(ctx->secret.data, ctx->secret.len);
        ctx->secret.len = 0;
    }
}


static void *
ngx_http_mail_plus_jmap_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mail_plus_jmap_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mail_plus_jmap_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->prefix = { 0, NULL };
     *     conf->upload_path = NULL;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->max_size_request = NGX_CONF_UNSET_SIZE;
    conf->max_calls = NGX_CONF_UNSET_UINT;
    conf->max_objects_in_get = NGX_CONF_UNSET_UINT;
    conf->max_query_limit = NGX_CONF_UNSET_UINT;
    conf->max_objects_in_set = NGX_CONF_UNSET_UINT;
    conf->max_size_upload = NGX_CONF_UNSET_SIZE;
    conf->max_concurrent = NGX_CONF_UNSET_UINT;
    conf->upload_expire = NGX_CONF_UNSET;
    conf->upload_quota = NGX_CONF_UNSET;
    conf->read_ahead = NGX_CONF_UNSET_SIZE;
    conf->imap.timeout = NGX_CONF_UNSET_MSEC;
    conf->imap.keepalive = NGX_CONF_UNSET_UINT;
    conf->imap.keepalive_timeout = NGX_CONF_UNSET_MSEC;
    conf->imap.limits.total = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_http_mail_plus_jmap_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_mail_plus_jmap_loc_conf_t *prev = parent;
    ngx_http_mail_plus_jmap_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_size_value(conf->max_size_request, prev->max_size_request,
                              10 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_calls, prev->max_calls, 16);
    ngx_conf_merge_uint_value(conf->max_objects_in_get,
                              prev->max_objects_in_get, 500);
    ngx_conf_merge_uint_value(conf->max_query_limit, prev->max_query_limit,
                              1000);
    ngx_conf_merge_uint_value(conf->max_objects_in_set,
                              prev->max_objects_in_set, 500);
    ngx_conf_merge_size_value(conf->max_size_upload, prev->max_size_upload,
                              25 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_concurrent, prev->max_concurrent, 4);
    ngx_conf_merge_sec_value(conf->upload_expire, prev->upload_expire,
                             24 * 60 * 60);
    ngx_conf_merge_off_value(conf->upload_quota, prev->upload_quota,
                             100 * 1024 * 1024);
    ngx_conf_merge_size_value(conf->read_ahead, prev->read_ahead,
                              512 * 1024);

    if (ngx_conf_merge_path_value(cf, &conf->upload_path, prev->upload_path,
                                  &ngx_http_mail_plus_jmap_upload_temp_path)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_msec_value(conf->imap.timeout, prev->imap.timeout, 30000);
    ngx_conf_merge_uint_value(conf->imap.keepalive, prev->imap.keepalive, 32);
    ngx_conf_merge_msec_value(conf->imap.keepalive_timeout,
                              prev->imap.keepalive_timeout, 60000);
    ngx_conf_merge_size_value(conf->imap.limits.total,
                              prev->imap.limits.total, 64 * 1024 * 1024);

    if (conf->imap.limits.total < 65536) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mail_plus_jmap_imap_max_response\" must be "
                           "at least 64k");
        return NGX_CONF_ERROR;
    }

    /*
     * a response's literal as large as the response; a line of 64k; a
     * list of up to one item for every 64 bytes of the limit, at least
     * 200,000 (a SEARCH answer of 100,000 UIDs fits); the memory a
     * response takes is bounded by its size all the same
     */

    conf->imap.limits.literal = conf->imap.limits.total;
    conf->imap.limits.line = 65536;
    conf->imap.limits.depth = 64;
    conf->imap.limits.items = ngx_max(conf->imap.limits.total / 64, 200000);

    if (conf->max_size_request == 0 || conf->max_calls == 0
        || conf->max_objects_in_get == 0 || conf->max_query_limit == 0
        || conf->max_objects_in_set == 0
        || conf->max_size_upload == 0
        || conf->max_concurrent == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the \"mail_plus_jmap_max_*\" limits must be "
                           "at least 1");
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->client_max_body_size
        && clcf->client_max_body_size < (off_t) conf->max_size_request)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"client_max_body_size\" %O is less than "
                           "\"mail_plus_jmap_max_size_request\" %uz: "
                           "larger requests get nginx's own 413",
                           clcf->client_max_body_size,
                           conf->max_size_request);
    }

    return NGX_CONF_OK;
}


/* in a prefix location ending in "/": its resources are under it */

static char *
ngx_http_mail_plus_jmap(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mail_plus_jmap_loc_conf_t *jlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (jlcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (
#if (NGX_PCRE)
        clcf->regex ||
#endif
        clcf->exact_match || clcf->named || clcf->name.len == 0
        || clcf->name.data[clcf->name.len - 1] != '/')
    {
        return "must be in a prefix location ending in \"/\"";
    }

    jlcf->enable = 1;
    jlcf->prefix = clcf->name;

    clcf->handler = ngx_http_mail_plus_jmap_handler;

    return NGX_CONF_OK;
}


/* RFC 8620 6.1: an upload is kept at least an hour */

static char *
ngx_http_mail_plus_jmap_expire(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *expire = data;

    if (*expire < 3600) {
        return "must be at least 1h";
    }

    return NGX_CONF_OK;
}
