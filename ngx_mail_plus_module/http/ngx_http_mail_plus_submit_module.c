
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_http_mail_plus.h"


/*
 * HTTP submission into the queue of the mail{} block: a POST with the raw
 * message as its body and the envelope in the query arguments, from a user
 * who authenticates with HTTP Basic against the router, as SMTP AUTH does.
 *
 * The body is read without buffering (r->request_body_no_buffering) and
 * streamed into the temporary file of the spool as it arrives, through the
 * reader of the SMTP server (BDAT mode: no dots, bare CR and LF made CRLF)
 * and a 32 KB buffer, with a plain write() as the SMTP server does
 * (ngx_mail_plus_submission_write(), shared with JMAP's submission): no
 * request body temporary file, no copy of it to read back in the event
 * loop, and no more memory than the buffers whatever the size.  Only after
 * the queue's group commit (fsync in its thread pool) is 202 sent.
 */


#define NGX_HTTP_MAIL_PLUS_SUBMIT_RETRY       60


typedef struct {
    ngx_flag_t                      enable;
    off_t                           max_size;
    ngx_uint_t                      max_recipients;
    time_t                          retry_after;
} ngx_http_mail_plus_submit_loc_conf_t;


typedef struct {
    ngx_mail_plus_check_t          *check;
    ngx_mail_plus_submission_t      spool;       /* the message */
    ngx_event_t                     delay;       /* a refusal sent late */

    ngx_str_t                       login;
    ngx_str_t                       from;
    ngx_str_t                       ret;
    ngx_str_t                       envid;
    ngx_array_t                    *rcpts;       /* ngx_str_t */
    ngx_array_t                    *dsn;         /* ngx_str_t */


    ngx_uint_t                      status;      /* of a refusal */
    char                           *error;

    unsigned                        smtputf8:1;
    unsigned                        tempfail:1;
} ngx_http_mail_plus_submit_ctx_t;


static ngx_int_t ngx_http_mail_plus_submit_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_submit_args(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx, char **error);
static ngx_int_t ngx_http_mail_plus_submit_sender(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx,
    ngx_http_mail_plus_submit_query_t *q, char **error);
static ngx_int_t ngx_http_mail_plus_submit_rcpts(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx,
    ngx_http_mail_plus_submit_query_t *q, char **error);
static ngx_int_t ngx_http_mail_plus_submit_path(ngx_http_request_t *r,
    ngx_uint_t rcpt, ngx_str_t *addr, ngx_str_t *params,
    ngx_mail_plus_smtp_path_t *path);
static ngx_int_t ngx_http_mail_plus_submit_checked(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_submit_auth_done(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx);
static void ngx_http_mail_plus_submit_delay_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_mail_plus_submit_open(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx);
static void ngx_http_mail_plus_submit_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_submit_content(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx, u_char *pos, u_char *last);
static ngx_int_t ngx_http_mail_plus_submit_end(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx);
static void ngx_http_mail_plus_submit_committed(ngx_mail_plus_queue_msg_t *m);
static void ngx_http_mail_plus_submit_cleanup(void *data);
static ngx_int_t ngx_http_mail_plus_submit_refuse(
    ngx_http_mail_plus_submit_ctx_t *ctx, ngx_uint_t status, char *error);
static ngx_int_t ngx_http_mail_plus_submit_spool_error(
    ngx_http_mail_plus_submit_ctx_t *ctx, ngx_err_t err);
static ngx_int_t ngx_http_mail_plus_submit_error(ngx_http_request_t *r,
    ngx_uint_t status, char *text);
static ngx_int_t ngx_http_mail_plus_submit_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *json, size_t len);
static void *ngx_http_mail_plus_submit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mail_plus_submit_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_mail_plus_submit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mail_plus_submit_commands[] = {

    { ngx_string("mail_plus_submit"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_submit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mail_plus_submit_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_submit_loc_conf_t, max_size),
      NULL },

    { ngx_string("mail_plus_submit_max_recipients"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_submit_loc_conf_t, max_recipients),
      NULL },

    { ngx_string("mail_plus_submit_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mail_plus_submit_loc_conf_t, retry_after),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mail_plus_submit_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mail_plus_submit_create_loc_conf,
    ngx_http_mail_plus_submit_merge_loc_conf
};


ngx_module_t  ngx_http_mail_plus_submit_module = {
    NGX_MODULE_V1,
    &ngx_http_mail_plus_submit_module_ctx, /* module context */
    ngx_http_mail_plus_submit_commands,    /* module directives */
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


static ngx_int_t
ngx_http_mail_plus_submit_handler(ngx_http_request_t *r)
{
    char                                  *error;
    ngx_int_t                              rc;
    ngx_str_t                             *type;
    ngx_pool_cleanup_t                    *cln;
    ngx_mail_plus_main_conf_t             *mpcf;
    ngx_http_mail_plus_submit_ctx_t       *ctx;
    ngx_http_mail_plus_submit_loc_conf_t  *slcf;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http submit: request");

    if (!(r->method & NGX_HTTP_POST)) {
        return ngx_http_mail_plus_submit_error(r, NGX_HTTP_NOT_ALLOWED,
                                               "method not allowed");
    }

    mpcf = ngx_mail_plus_get_main_conf((ngx_cycle_t *) ngx_cycle);

    if (mpcf == NULL || ngx_mail_plus_queue_get((ngx_cycle_t *) ngx_cycle)
                        == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_plus_submit: no mail{} block with queue_spool "
                      "is configured");
        return ngx_http_mail_plus_submit_error(r,
                                   NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "no queue is configured");
    }

    if (ngx_http_auth_basic_user(r) != NGX_OK) {
        return ngx_http_mail_plus_submit_error(r, NGX_HTTP_UNAUTHORIZED,
                                               "authentication required");
    }

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;

    if (type
        && (type->len < sizeof("message/rfc822") - 1
            || ngx_strncasecmp(type->data, (u_char *) "message/rfc822",
                               sizeof("message/rfc822") - 1)
               != 0
            || (type->len > sizeof("message/rfc822") - 1
                && type->data[sizeof("message/rfc822") - 1] != ';'
                && type->data[sizeof("message/rfc822") - 1] != ' ')))
    {
        return ngx_http_mail_plus_submit_error(r,
                                   NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "the body must be message/rfc822");
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_submit_module);

    if (r->headers_in.content_length_n > slcf->max_size) {
        return ngx_http_mail_plus_submit_error(r,
                                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "message size exceeds the limit");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_submit_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->login = r->headers_in.user;

    /*
     * a login or a password with a control character is the router's to
     * refuse, as a failed login (401, counted): the arguments, where the
     * login may be the sender, are not read for it
     */

    if (!ngx_mail_plus_text_has_ctl(&r->headers_in.user)
        && !ngx_mail_plus_text_has_ctl(&r->headers_in.passwd))
    {
        rc = ngx_http_mail_plus_submit_args(r, ctx, &error);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_OK) {
            return ngx_http_mail_plus_submit_error(r, rc, error);
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_mail_plus_submit_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_mail_plus_submit_module);

    /* the same check as SMTP AUTH: the thread pool, the throttles */

    ctx->check = ngx_mail_plus_check_create(mpcf, r->connection->log);
    if (ctx->check == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_mail_plus_check_set_submission(ctx->check, &r->headers_in.user,
                                           &r->headers_in.passwd,
                                           &r->connection->addr_text)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a pool whose backends check passwords cannot be asked here */

    ctx->check->router_only = 1;

    return ngx_http_mail_plus_check(r, ctx->check,
                                    ngx_http_mail_plus_submit_checked);
}


/*
 * from=, to= (repeated), notify=, ret=, envid=; the values are checked by
 * the parser of MAIL FROM and RCPT TO; NGX_OK, NGX_ERROR or the status of
 * the refusal, with *error
 */

static ngx_int_t
ngx_http_mail_plus_submit_args(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx, char **error)
{
    ngx_int_t                              rc;
    ngx_http_mail_plus_submit_query_t      q;
    ngx_http_mail_plus_submit_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_submit_module);

    rc = ngx_http_mail_plus_submit_query(&r->args, r->pool, &q, error);

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->ret = q.ret;
    ctx->envid = q.envid;

    if (q.to.nelts > slcf->max_recipients) {
        *error = "too many recipients";
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = ngx_http_mail_plus_submit_sender(r, ctx, &q, error);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_mail_plus_submit_rcpts(r, ctx, &q, error);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http submit: query parsed, from <%V>, %ui recipients",
                   &ctx->from, ctx->rcpts->nelts);

    return NGX_OK;
}


/* the sender: from=, empty for the null sender, or the login; ret=, envid= */

static ngx_int_t
ngx_http_mail_plus_submit_sender(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx,
    ngx_http_mail_plus_submit_query_t *q, char **error)
{
    ngx_str_t                  from, params;
    ngx_mail_plus_smtp_path_t  path;

    from = q->has_from ? q->from : ctx->login;

    params.len = 0;
    params.data = ngx_pnalloc(r->pool, sizeof(" RET= ENVID=") - 1
                                       + ctx->ret.len + ctx->envid.len);
    if (params.data == NULL) {
        return NGX_ERROR;
    }

    if (ctx->ret.len) {
        params.len = ngx_sprintf(params.data, " RET=%V", &ctx->ret)
                     - params.data;
    }

    if (ctx->envid.len) {
        params.len = ngx_sprintf(params.data + params.len, " ENVID=%V",
                                 &ctx->envid)
                     - params.data;
    }

    if (ngx_http_mail_plus_submit_path(r, 0, &from, &params, &path)
        != NGX_OK)
    {
        *error = "invalid from=, ret= or envid=";
        return NGX_HTTP_BAD_REQUEST;
    }

    ctx->from = path.addr;
    ctx->ret = path.ret;
    ctx->envid = path.envid;
    ctx->smtputf8 = path.utf8;

    return NGX_OK;
}


/* the recipients, each with notify= */

static ngx_int_t
ngx_http_mail_plus_submit_rcpts(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx,
    ngx_http_mail_plus_submit_query_t *q, char **error)
{
    ngx_str_t                  params, *rcpt, *dsn, *to;
    ngx_uint_t                 i;
    ngx_mail_plus_smtp_path_t  path;

    ctx->rcpts = ngx_array_create(r->pool, q->to.nelts, sizeof(ngx_str_t));
    ctx->dsn = ngx_array_create(r->pool, q->to.nelts, sizeof(ngx_str_t));
    if (ctx->rcpts == NULL || ctx->dsn == NULL) {
        return NGX_ERROR;
    }

    params.len = 0;
    params.data = ngx_pnalloc(r->pool, sizeof(" NOTIFY=") - 1
                                       + q->notify.len);
    if (params.data == NULL) {
        return NGX_ERROR;
    }

    if (q->notify.len) {
        params.len = ngx_sprintf(params.data, " NOTIFY=%V", &q->notify)
                     - params.data;
    }

    to = q->to.elts;

    for (i = 0; i < q->to.nelts; i++) {

        if (to[i].len == 0
            || ngx_http_mail_plus_submit_path(r, 1, &to[i], &params, &path)
               != NGX_OK
            || path.domain.len == 0)
        {
            *error = "invalid to= or notify=";
            return NGX_HTTP_BAD_REQUEST;
        }

        rcpt = ngx_array_push(ctx->rcpts);
        dsn = ngx_array_push(ctx->dsn);
        if (rcpt == NULL || dsn == NULL) {
            return NGX_ERROR;
        }

        *rcpt = path.addr;

        if (ngx_mail_plus_dsn_value(r->pool, &path, dsn) != NGX_OK) {
            return NGX_ERROR;
        }

        if (path.utf8) {
            ctx->smtputf8 = 1;
        }
    }

    return NGX_OK;
}


/* "FROM:<addr> params" or "TO:<addr> params" through the SMTP parser */

static ngx_int_t
ngx_http_mail_plus_submit_path(ngx_http_request_t *r, ngx_uint_t rcpt,
    ngx_str_t *addr, ngx_str_t *params, ngx_mail_plus_smtp_path_t *path)
{
    ngx_str_t  arg;

    if (addr->len > NGX_MAIL_PLUS_SMTP_MAX_PATH) {
        return NGX_ERROR;
    }

    arg.data = ngx_pnalloc(r->pool, sizeof("FROM:<>") - 1 + addr->len
                                    + params->len);
    if (arg.data == NULL) {
        return NGX_ERROR;
    }

    arg.len = ngx_sprintf(arg.data, "%s:<%V>%V", rcpt ? "TO" : "FROM",
                          addr, params)
              - arg.data;

    return ngx_mail_plus_smtp_parse_path(&arg, rcpt, path);
}


static ngx_int_t
ngx_http_mail_plus_submit_checked(ngx_http_request_t *r)
{
    ngx_http_mail_plus_submit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_submit_module);

    return ngx_http_mail_plus_submit_auth_done(r, ctx);
}


/* the router answered: the message is read, or the request refused */

static ngx_int_t
ngx_http_mail_plus_submit_auth_done(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx)
{
    time_t                  delay;
    ngx_int_t               rc;
    ngx_str_t               login;
    ngx_mail_plus_route_t  *route;

    route = &ctx->check->route;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http submit: credentials checked, route status %ui, "
                   "query valid: %ui", route->status,
                   (ngx_uint_t) (ctx->rcpts != NULL));

    if (route->status == NGX_MAIL_PLUS_ALLOW
        && route->pool->auth == NGX_MAIL_PLUS_AUTH_ROUTER
        && ctx->rcpts)
    {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;

        rc = ngx_http_mail_plus_submit_open(r, ctx);

        if (rc == NGX_DECLINED) {
            return ngx_http_mail_plus_submit_error(r, ctx->status,
                                                   ctx->error);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        r->request_body_no_buffering = 1;

        rc = ngx_http_read_client_request_body(r,
                                            ngx_http_mail_plus_submit_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    /* a pool whose backends check passwords cannot be asked here */

    if (route->reason.len == 0) {
        ngx_str_set(&route->reason, "the pool does not check passwords");
    }

    if (ngx_mail_plus_text_log(r->pool, &ctx->login, &login) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "http submission: login \"%V\" failed: %V", &login,
                  &route->reason);

    if (route->status == NGX_MAIL_PLUS_TEMPFAIL) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;

        ctx->tempfail = 1;

        return ngx_http_mail_plus_submit_error(r,
                                   NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "temporary authentication failure");
    }

    /* the router's delay: it grows with the failures it counted */

    delay = route->delay;

    ngx_mail_plus_check_free(ctx->check);
    ctx->check = NULL;

    if (delay == 0) {
        return ngx_http_mail_plus_submit_error(r, NGX_HTTP_UNAUTHORIZED,
                                               "authentication failed");
    }

    ctx->delay.handler = ngx_http_mail_plus_submit_delay_handler;
    ctx->delay.data = r;
    ctx->delay.log = r->connection->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http submit: login failed, answer after %T s", delay);

    ngx_add_timer(&ctx->delay, (ngx_msec_t) delay * 1000);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_mail_plus_submit_delay_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_http_finalize_request(r,
        ngx_http_mail_plus_submit_error(r, NGX_HTTP_UNAUTHORIZED,
                                        "authentication failed"));
    ngx_http_run_posted_requests(c);
}


/* the temporary file of the spool, with the Received field */

static ngx_int_t
ngx_http_mail_plus_submit_open(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx)
{
    ngx_int_t                              rc;
    ngx_connection_t                      *c;
    ngx_mail_plus_queue_t                 *q;
    ngx_http_core_srv_conf_t              *cscf;
    ngx_mail_plus_received_t               rv;
    ngx_mail_plus_queue_envelope_t         env;
    ngx_http_mail_plus_submit_loc_conf_t  *slcf;

    c = r->connection;

    q = ngx_mail_plus_queue_get((ngx_cycle_t *) ngx_cycle);

    ngx_memzero(&env, sizeof(ngx_mail_plus_queue_envelope_t));

    env.sender = ctx->from;
    env.recipients = ctx->rcpts;
    env.client = c->addr_text;
    env.login = ctx->login;
    env.body = NGX_MAIL_PLUS_BODY_7BIT;
    env.ret = ctx->ret;
    env.envid = ctx->envid;
    env.dsn = ctx->dsn;
    env.smtputf8 = ctx->smtputf8;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_submit_module);

    ngx_str_null(&rv.helo);
    rv.addr = c->addr_text;
    rv.ipv6 = (c->sockaddr->sa_family == AF_INET6);
    rv.server_name = cscf->server_name.len ? cscf->server_name
                                           : ngx_cycle->hostname;
    rv.with = c->ssl ? "HTTPSA" : "HTTPA";
    rv.rcpt = (ctx->rcpts->nelts == 1) ? ctx->rcpts->elts : NULL;

    ctx->spool.max_size = slcf->max_size;
    ctx->spool.server_name = rv.server_name;

    rc = ngx_mail_plus_submission_open(&ctx->spool, q, &env, &rv, r->pool,
                                       c->log);

    if (rc == NGX_DECLINED) {
        return ngx_http_mail_plus_submit_spool_error(ctx, ngx_errno);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * the post handler of the body, and the read handler after it: what has
 * arrived is written to the spool file, and the buffers are given back
 */

static void
ngx_http_mail_plus_submit_body(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_chain_t                      *cl;
    ngx_http_request_body_t          *rb;
    ngx_http_mail_plus_submit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_submit_module);
    rb = r->request_body;

    for ( ;; ) {

        for (cl = rb->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_special(b)) {
                continue;   /* the last_buf of an empty body */
            }

            if (!ngx_buf_in_memory(b)) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "http submission: request body in a file");
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto failed;
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "http submit: body chunk of %uz bytes",
                           (size_t) (b->last - b->pos));

            rc = ngx_http_mail_plus_submit_content(r, ctx, b->pos, b->last);

            b->pos = b->last;

            if (rc != NGX_OK) {
                goto failed;
            }
        }

        rb->bufs = NULL;

        if (!r->reading_body) {
            break;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            goto failed;
        }

        if (rb->bufs == NULL) {

            if (r->reading_body) {
                ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "http submit: waiting for more of the body");
                r->read_event_handler = ngx_http_mail_plus_submit_body;
                return;
            }

            break;
        }
    }

    r->read_event_handler = ngx_http_block_reading;

    rc = ngx_http_mail_plus_submit_end(r, ctx);

    if (rc == NGX_DONE) {
        return;
    }

failed:

    /* the temporary file goes at once, not with a lingering connection */

    if (ctx->spool.msg) {
        ngx_mail_plus_queue_abort(ctx->spool.msg);
        ctx->spool.msg = NULL;
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_mail_plus_submit_error(r, ctx->status, ctx->error);
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_mail_plus_submit_content(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx, u_char *pos, u_char *last)
{
    ngx_int_t  rc;

    if (ngx_strlchr(pos, last, '\0') != NULL) {
        return ngx_http_mail_plus_submit_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                                "a NUL byte in the message");
    }

    rc = ngx_mail_plus_submission_write(&ctx->spool, pos, last);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "http submission: message over %O octets refused",
                      ctx->spool.max_size);

        return ngx_http_mail_plus_submit_refuse(ctx,
                                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "message size exceeds the limit");
    }

    if (rc != NGX_OK) {
        return ngx_http_mail_plus_submit_spool_error(ctx,
                                                     ctx->spool.msg->err);
    }

    return NGX_OK;
}


/* the whole body is read: the message is committed; NGX_DONE */

static ngx_int_t
ngx_http_mail_plus_submit_end(ngx_http_request_t *r,
    ngx_http_mail_plus_submit_ctx_t *ctx)
{
    ngx_mail_plus_queue_msg_t  *m;

    if (ctx->spool.data.size == 0) {
        return ngx_http_mail_plus_submit_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                                "an empty message");
    }

    m = ctx->spool.msg;

    if (ngx_mail_plus_submission_end(&ctx->spool) != NGX_OK) {
        return ngx_http_mail_plus_submit_spool_error(ctx, m->err);
    }

    m->handler = ngx_http_mail_plus_submit_committed;
    m->data = r;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http submit: message %s of %O bytes read, commit posted",
                   m->id, ctx->spool.data.size);

    (void) ngx_mail_plus_queue_commit(m);

    return NGX_DONE;
}


static void
ngx_http_mail_plus_submit_committed(ngx_mail_plus_queue_msg_t *m)
{
    u_char                           *p;
    ngx_int_t                         rc;
    ngx_connection_t                 *c;
    ngx_http_request_t               *r;
    ngx_http_mail_plus_submit_ctx_t  *ctx;
    u_char                            json[sizeof("{\"queue_id\":\"\"}")
                                           + NGX_MAIL_PLUS_QUEUE_ID_LEN];

    r = m->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_submit_module);

    ctx->spool.msg = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http submit: commit of %s done, error %d", m->id, m->err);

    if (m->err) {
        (void) ngx_http_mail_plus_submit_spool_error(ctx, m->err);
        rc = ngx_http_mail_plus_submit_error(r, ctx->status, ctx->error);

    } else {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "queued %s: from=<%V>, nrcpt=%ui, size=%O, "
                      "client=%V, login=\"%V\", via http",
                      m->id, &ctx->from, ctx->rcpts->nelts,
                      ctx->spool.data.size, &c->addr_text, &ctx->login);

        p = ngx_sprintf(json, "{\"queue_id\":\"%s\"}", m->id);

        rc = ngx_http_mail_plus_submit_send(r, NGX_HTTP_ACCEPTED, json,
                                            p - json);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * the request went away: a check in a thread or a message in a commit
 * is only marked, and freed when the thread is done
 */

static void
ngx_http_mail_plus_submit_cleanup(void *data)
{
    ngx_http_mail_plus_submit_ctx_t  *ctx = data;

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->spool.msg) {
        ngx_mail_plus_queue_abort(ctx->spool.msg);
        ctx->spool.msg = NULL;
    }

    if (ctx->delay.timer_set) {
        ngx_del_timer(&ctx->delay);
    }
}


/* a refusal found while the body is read: NGX_DECLINED */

static ngx_int_t
ngx_http_mail_plus_submit_refuse(ngx_http_mail_plus_submit_ctx_t *ctx,
    ngx_uint_t status, char *error)
{
    ctx->status = status;
    ctx->error = error;

    return NGX_DECLINED;
}


/* 507 when the disk is full, 503 otherwise, with Retry-After */

static ngx_int_t
ngx_http_mail_plus_submit_spool_error(ngx_http_mail_plus_submit_ctx_t *ctx,
    ngx_err_t err)
{
    ctx->tempfail = 1;

    if (err == NGX_ENOSPC
#ifdef EDQUOT
        || err == EDQUOT
#endif
        )
    {
        return ngx_http_mail_plus_submit_refuse(ctx, 507,
                                                "insufficient storage");
    }

    return ngx_http_mail_plus_submit_refuse(ctx,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "the queue is not available");
}


/*
 * a JSON error; a message being written is removed; the rest of a body
 * not read is discarded, or the connection closed after the answer
 */

static ngx_int_t
ngx_http_mail_plus_submit_error(ngx_http_request_t *r, ngx_uint_t status,
    char *text)
{
    u_char                                *p;
    size_t                                 len;
    ngx_str_t                              value;
    ngx_http_mail_plus_submit_ctx_t       *ctx;
    ngx_http_mail_plus_submit_loc_conf_t  *slcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_submit_module);

    if (ctx && ctx->spool.msg) {
        ngx_mail_plus_queue_abort(ctx->spool.msg);
        ctx->spool.msg = NULL;
    }

    if (r->request_body == NULL) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

    } else if (r->reading_body) {

        /* the rest is not read: the answer says the connection closes */

        r->keepalive = 0;
    }

    if (status == NGX_HTTP_UNAUTHORIZED) {
        ngx_str_set(&value, "Basic realm=\"mail\", charset=\"UTF-8\"");

        if (ngx_http_mail_plus_header(r, "WWW-Authenticate", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&value, "POST");

        if (ngx_http_mail_plus_header(r, "Allow", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (ctx && ctx->tempfail) {
        slcf = ngx_http_get_module_loc_conf(r,
                                            ngx_http_mail_plus_submit_module);

        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%T", slcf->retry_after)
                    - value.data;

        if (ngx_http_mail_plus_header(r, "Retry-After", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    len = sizeof("{\"error\":\"\"}") - 1 + ngx_strlen(text);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_sprintf(p, "{\"error\":\"%s\"}", text);

    return ngx_http_mail_plus_submit_send(r, status, p, len);
}


static ngx_int_t
ngx_http_mail_plus_submit_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, json, len);
    *b->last++ = LF;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http submit: answer %ui, %uz bytes", status, len + 1);

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static void *
ngx_http_mail_plus_submit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mail_plus_submit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mail_plus_submit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->max_size = NGX_CONF_UNSET;
    conf->max_recipients = NGX_CONF_UNSET_UINT;
    conf->retry_after = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_mail_plus_submit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_mail_plus_submit_loc_conf_t *prev = parent;
    ngx_http_mail_plus_submit_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_off_value(conf->max_size, prev->max_size,
                             10 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_recipients, prev->max_recipients,
                              100);
    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after,
                             NGX_HTTP_MAIL_PLUS_SUBMIT_RETRY);

    if (conf->max_recipients == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mail_plus_submit_max_recipients\" must be "
                           "at least 1");
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    /* nginx's own limit comes first: it would answer 413 itself */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->client_max_body_size
        && clcf->client_max_body_size < conf->max_size)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"client_max_body_size\" %O is less than "
                           "\"mail_plus_submit_max_size\" %O: larger "
                           "messages get nginx's own 413",
                           clcf->client_max_body_size, conf->max_size);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_mail_plus_submit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mail_plus_submit_loc_conf_t *slcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    slcf->enable = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_mail_plus_submit_handler;

    return NGX_CONF_OK;
}
