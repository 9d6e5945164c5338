
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_queue.h"
#include "ngx_http_mail_plus.h"


/*
 * The queue operations of the HTTP JSON API ("mail_plus_queue_api"),
 * relative to the location:
 *
 *   GET    messages                 a listing of the spool
 *   GET    messages/<ID>            one message: envelope and state
 *   POST   messages/<ID>/hold       incoming/ or deferred/ to hold/
 *   POST   messages/<ID>/release    hold/ to incoming/
 *   DELETE messages/<ID>            the message and its state
 *   POST   flush[?destination=HOST:PORT]
 *                                   deferred messages due now
 *
 * Spool I/O is the queue's (ngx_mail_plus_queue_list(),
 * ngx_mail_plus_queue_admin()) and runs in its thread pool; the request
 * waits for it as the status endpoint does.  Only the parsing of what
 * was read, in memory, is done here.
 */


#define NGX_HTTP_MAIL_PLUS_QUEUE_API_LIST       ((ngx_uint_t) -1)
#define NGX_HTTP_MAIL_PLUS_QUEUE_API_FLUSH      ((ngx_uint_t) -2)

/* a destination's name as the log shows it: host:port, [IPv6]:port */

#define NGX_HTTP_MAIL_PLUS_QUEUE_API_DEST       128

#define NGX_HTTP_MAIL_PLUS_QUEUE_API_LIMIT      1000
#define NGX_HTTP_MAIL_PLUS_QUEUE_API_MAX_LIMIT  10000

/* the room for an envelope and for a state file that are shown */

#define NGX_HTTP_MAIL_PLUS_QUEUE_API_HEAD       (1024 * 1024)
#define NGX_HTTP_MAIL_PLUS_QUEUE_API_STATE      (1024 * 1024)


typedef struct {
    ngx_uint_t                     what;   /* NGX_MAIL_PLUS_QUEUE_*, LIST */
    u_char                         id[NGX_MAIL_PLUS_QUEUE_ID_LEN + 1];
    ngx_uint_t                     limit;
    char                          *error;   /* refused by the route */
    ngx_str_t                      dest;    /* a flush: empty, all */
    ngx_uint_t                     flushed;
    ngx_mail_plus_queue_list_t     list;
    ngx_mail_plus_queue_admin_t    admin;
} ngx_http_mail_plus_queue_api_ctx_t;


static ngx_int_t ngx_http_mail_plus_queue_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_queue_api_route(ngx_http_request_t *r,
    ngx_http_mail_plus_queue_api_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_queue_api_flush(ngx_http_request_t *r,
    ngx_http_mail_plus_queue_api_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_queue_api_limit(ngx_http_request_t *r,
    ngx_http_mail_plus_queue_api_ctx_t *ctx);
static void ngx_http_mail_plus_queue_api_done(void *data);
static ngx_int_t ngx_http_mail_plus_queue_api_respond(ngx_http_request_t *r);
static void ngx_http_mail_plus_queue_api_list(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_queue_api_ctx_t *ctx);
static ngx_uint_t ngx_http_mail_plus_queue_api_admin(
    ngx_http_mail_plus_out_t *o, ngx_http_mail_plus_queue_api_ctx_t *ctx);
static void ngx_http_mail_plus_queue_api_show(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_queue_api_ctx_t *ctx);
static void ngx_http_mail_plus_queue_api_envelope(
    ngx_http_mail_plus_out_t *o, ngx_mail_plus_queue_record_t *r);
static void ngx_http_mail_plus_queue_api_last(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_queue_error_t *err);
static void ngx_http_mail_plus_queue_api_text(ngx_http_mail_plus_out_t *o,
    ngx_str_t *escaped);
static void ngx_http_mail_plus_queue_api_field(ngx_http_mail_plus_out_t *o,
    char *name, ngx_str_t *value);
static void ngx_http_mail_plus_queue_api_time(ngx_http_mail_plus_out_t *o,
    char *name, time_t t);
static ngx_int_t ngx_http_mail_plus_queue_api_error(ngx_http_request_t *r,
    ngx_int_t status, char *error);
static char *ngx_http_mail_plus_queue_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_mail_plus_queue_api_commands[] = {

    { ngx_string("mail_plus_queue_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_mail_plus_queue_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mail_plus_queue_api_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_mail_plus_queue_api_module = {
    NGX_MODULE_V1,
    &ngx_http_mail_plus_queue_api_module_ctx, /* module context */
    ngx_http_mail_plus_queue_api_commands,    /* module directives */
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


static char  *ngx_http_mail_plus_queue_api_actions[] = {
    "show", "hold", "release", "delete"
};


static ngx_int_t
ngx_http_mail_plus_queue_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                            rc;
    ngx_mail_plus_queue_t               *q;
    ngx_mail_plus_queue_admin_t         *a;
    ngx_http_mail_plus_queue_api_ctx_t  *ctx;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_queue_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_mail_plus_queue_api_route(r, ctx);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http queue api: request routed: %i, operation %ui",
                   rc, ctx->what);

    if (rc != NGX_OK) {
        return ctx->error ? ngx_http_mail_plus_queue_api_error(r, rc,
                                                               ctx->error)
                          : rc;
    }

    q = ngx_mail_plus_queue_get((ngx_cycle_t *) ngx_cycle);

    if (q == NULL) {
        return ngx_http_mail_plus_queue_api_error(r,
                                       NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "no queue spool is configured");
    }

    ngx_http_set_ctx(r, ctx, ngx_http_mail_plus_queue_api_module);

    if (ctx->what == NGX_HTTP_MAIL_PLUS_QUEUE_API_LIST) {
        ctx->list.nalloc = ctx->limit;
        ctx->list.entries = ngx_palloc(r->pool, ctx->limit
                                       * sizeof(ngx_mail_plus_queue_entry_t));
        if (ctx->list.entries == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_mail_plus_queue_list(q, &ctx->list,
                                      ngx_http_mail_plus_queue_api_done, r,
                                      r->pool, r->connection->log);

    } else if (ctx->what == NGX_HTTP_MAIL_PLUS_QUEUE_API_FLUSH) {
        rc = ngx_mail_plus_queue_flush(q, ctx->dest.len
                                          ? ngx_mail_plus_queue_key(&ctx->dest)
                                          : 0,
                                       &ctx->flushed,
                                       ngx_http_mail_plus_queue_api_done, r,
                                       r->pool, r->connection->log);

    } else {
        a = &ctx->admin;
        a->what = ctx->what;

        if (a->what == NGX_MAIL_PLUS_QUEUE_SHOW) {
            a->head_size = NGX_HTTP_MAIL_PLUS_QUEUE_API_HEAD;
            a->head.data = ngx_pnalloc(r->pool, a->head_size);
            a->state_size = NGX_HTTP_MAIL_PLUS_QUEUE_API_STATE;
            a->state.data = ngx_pnalloc(r->pool, a->state_size);

            if (a->head.data == NULL || a->state.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        rc = ngx_mail_plus_queue_admin(q, ctx->id, a,
                                       ngx_http_mail_plus_queue_api_done, r,
                                       r->pool, r->connection->log);
    }

    if (rc == NGX_AGAIN) {
        return ngx_http_mail_plus_suspend(r);
    }

    if (rc == NGX_BUSY) {
        return ngx_http_mail_plus_queue_api_error(r,
                                       NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "the queue's thread pool is busy");
    }

    return ngx_http_mail_plus_queue_api_respond(r);
}


/*
 * the path after the location's name: "messages", "messages/<ID>",
 * "messages/<ID>/hold" or "messages/<ID>/release", and the method;
 * anything else is answered here
 */

static ngx_int_t
ngx_http_mail_plus_queue_api_route(ngx_http_request_t *r,
    ngx_http_mail_plus_queue_api_ctx_t *ctx)
{
    u_char                    *p, *last, *slash;
    ngx_str_t                  id, action, allow;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->uri.data;
    last = p + r->uri.len;

    if (r->uri.len < clcf->name.len
        || ngx_strncmp(p, clcf->name.data, clcf->name.len) != 0)
    {
        ctx->error = "not found";
        return NGX_HTTP_NOT_FOUND;
    }

    p += clcf->name.len;

    if (p < last && *p == '/') {
        p++;
    }

    if (last - p == 5 && ngx_strncmp(p, "flush", 5) == 0) {
        if (!(r->method & NGX_HTTP_POST)) {
            ngx_str_set(&allow, "POST");
            goto not_allowed;
        }

        ctx->what = NGX_HTTP_MAIL_PLUS_QUEUE_API_FLUSH;

        return ngx_http_mail_plus_queue_api_flush(r, ctx);
    }

    if (last - p < 8 || ngx_strncmp(p, "messages", 8) != 0
        || (last - p > 8 && p[8] != '/'))
    {
        ctx->error = "not found";
        return NGX_HTTP_NOT_FOUND;
    }

    p += 8;

    if (p < last) {
        p++;
    }

    if (p == last) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            ngx_str_set(&allow, "GET, HEAD");
            goto not_allowed;
        }

        ctx->what = NGX_HTTP_MAIL_PLUS_QUEUE_API_LIST;

        return ngx_http_mail_plus_queue_api_limit(r, ctx);
    }

    slash = ngx_strlchr(p, last, '/');

    id.data = p;
    id.len = (slash ? slash : last) - p;

    if (!ngx_mail_plus_queue_is_id(id.data, id.len)) {
        ctx->error = "bad queue ID";
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_memcpy(ctx->id, id.data, NGX_MAIL_PLUS_QUEUE_ID_LEN);

    if (slash == NULL) {
        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            ctx->what = NGX_MAIL_PLUS_QUEUE_SHOW;
            return NGX_OK;
        }

        if (r->method & NGX_HTTP_DELETE) {
            ctx->what = NGX_MAIL_PLUS_QUEUE_DELETE;
            return NGX_OK;
        }

        ngx_str_set(&allow, "GET, HEAD, DELETE");
        goto not_allowed;
    }

    action.data = slash + 1;
    action.len = last - action.data;

    if (action.len == 4 && ngx_strncmp(action.data, "hold", 4) == 0) {
        ctx->what = NGX_MAIL_PLUS_QUEUE_HOLD;

    } else if (action.len == 7
               && ngx_strncmp(action.data, "release", 7) == 0)
    {
        ctx->what = NGX_MAIL_PLUS_QUEUE_UNHOLD;

    } else {
        ctx->error = "not found";
        return NGX_HTTP_NOT_FOUND;
    }

    if (r->method & NGX_HTTP_POST) {
        return NGX_OK;
    }

    ngx_str_set(&allow, "POST");

not_allowed:

    if (ngx_http_mail_plus_header(r, "Allow", &allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->error = "method not allowed";
    return NGX_HTTP_NOT_ALLOWED;
}


/*
 * "destination=": a next hop's name as the delivery log shows it
 * (relay=), a host or an address and a port; checked byte by byte, as it
 * goes into a log line and the answer
 */

static ngx_int_t
ngx_http_mail_plus_queue_api_flush(ngx_http_request_t *r,
    ngx_http_mail_plus_queue_api_ctx_t *ctx)
{
    u_char     *p, *d;
    ngx_str_t   value;

    if (ngx_http_arg(r, (u_char *) "destination", 11, &value) != NGX_OK) {
        return NGX_OK;
    }

    if (value.len == 0 || value.len > 3 * NGX_HTTP_MAIL_PLUS_QUEUE_API_DEST) {
        ctx->error = "bad destination";
        return NGX_HTTP_BAD_REQUEST;
    }

    d = ngx_pnalloc(r->pool, value.len);
    if (d == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->dest.data = d;
    p = value.data;

    ngx_unescape_uri(&d, &p, value.len, 0);

    ctx->dest.len = d - ctx->dest.data;

    if (ctx->dest.len == 0
        || ctx->dest.len > NGX_HTTP_MAIL_PLUS_QUEUE_API_DEST)
    {
        ctx->error = "bad destination";
        return NGX_HTTP_BAD_REQUEST;
    }

    for (p = ctx->dest.data; p < d; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || *p == '.' || *p == '-' || *p == ':' || *p == '['
              || *p == ']' || *p == '_'))
        {
            ctx->error = "bad destination";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    return NGX_OK;
}


/* "limit=": 1000 messages by default, 10000 at most */

static ngx_int_t
ngx_http_mail_plus_queue_api_limit(ngx_http_request_t *r,
    ngx_http_mail_plus_queue_api_ctx_t *ctx)
{
    ngx_int_t  n;
    ngx_str_t  value;

    ctx->limit = NGX_HTTP_MAIL_PLUS_QUEUE_API_LIMIT;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &value) != NGX_OK) {
        return NGX_OK;
    }

    n = ngx_atoi(value.data, value.len);

    if (n <= 0) {
        ctx->error = "bad limit";
        return NGX_HTTP_BAD_REQUEST;
    }

    ctx->limit = ngx_min((ngx_uint_t) n,
                         NGX_HTTP_MAIL_PLUS_QUEUE_API_MAX_LIMIT);

    return NGX_OK;
}


static void
ngx_http_mail_plus_queue_api_done(void *data)
{
    ngx_http_mail_plus_resume(data, ngx_http_mail_plus_queue_api_respond);
}


static ngx_int_t
ngx_http_mail_plus_queue_api_respond(ngx_http_request_t *r)
{
    ngx_uint_t                           status;
    ngx_http_mail_plus_out_t             o;
    ngx_http_mail_plus_queue_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_queue_api_module);

    ngx_memzero(&o, sizeof(ngx_http_mail_plus_out_t));

    o.request = r;
    o.last = &o.out;

    if (ctx->what == NGX_HTTP_MAIL_PLUS_QUEUE_API_LIST) {
        ngx_http_mail_plus_queue_api_list(&o, ctx);
        status = NGX_HTTP_OK;

    } else if (ctx->what == NGX_HTTP_MAIL_PLUS_QUEUE_API_FLUSH) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "queue api: flush of %s%V: %ui messages due now",
                      ctx->dest.len ? "destination " : "the queue",
                      &ctx->dest, ctx->flushed);

        ngx_http_mail_plus_printf(&o, "{\"flushed\":%ui,\"destination\":",
                                  ctx->flushed);

        if (ctx->dest.len) {
            ngx_http_mail_plus_printf(&o, "\"%V\"}\n", &ctx->dest);

        } else {
            ngx_http_mail_plus_printf(&o, "null}\n");
        }

        status = NGX_HTTP_OK;

    } else {
        status = ngx_http_mail_plus_queue_api_admin(&o, ctx);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http queue api: operation %ui completed, answer %ui",
                   ctx->what, status);

    return ngx_http_mail_plus_send(r, status, "application/json", &o);
}


static void
ngx_http_mail_plus_queue_api_list(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_queue_api_ctx_t *ctx)
{
    ngx_str_t                     s;
    ngx_uint_t                    i;
    ngx_mail_plus_queue_entry_t  *e;

    ngx_http_mail_plus_printf(o, "{\"messages\":[");

    for (i = 0; i < ctx->list.nentries; i++) {
        e = &ctx->list.entries[i];

        ngx_http_mail_plus_printf(o, "%s{\"id\":\"%s\",\"queue\":\"%s\","
                                  "\"size\":%O", i ? "," : "", e->id,
                                  ngx_mail_plus_queue_dirs[e->where],
                                  e->size);

        if (e->envelope) {
            s.data = e->sender;
            s.len = e->sender_len;

            ngx_http_mail_plus_queue_api_field(o, "sender", &s);
            ngx_http_mail_plus_printf(o, ",\"recipients\":%ui",
                                      e->recipients);
            ngx_http_mail_plus_queue_api_time(o, "arrival", e->arrival);

        } else {
            ngx_http_mail_plus_printf(o, ",\"sender\":null,"
                                      "\"recipients\":null,"
                                      "\"arrival\":null");
        }

        ngx_http_mail_plus_queue_api_time(o, "next_attempt",
                                e->where == NGX_MAIL_PLUS_QUEUE_IN_DEFERRED
                                ? e->mtime : 0);

        ngx_http_mail_plus_printf(o, "}");
    }

    ngx_http_mail_plus_printf(o, "],\"count\":%ui,\"total\":%ui,"
                              "\"limit\":%ui,\"truncated\":%s}\n",
                              ctx->list.nentries, ctx->list.total,
                              ctx->limit,
                              ctx->list.total > ctx->list.nentries ? "true"
                                                                   : "false");
}


/* the answer to an operation on one message, and its status code */

static ngx_uint_t
ngx_http_mail_plus_queue_api_admin(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_queue_api_ctx_t *ctx)
{
    char                         *action, *where;
    ngx_log_t                    *log;
    ngx_mail_plus_queue_admin_t  *a;

    a = &ctx->admin;
    action = ngx_http_mail_plus_queue_api_actions[a->what];
    where = ngx_mail_plus_queue_dirs[a->where];
    log = o->request->connection->log;

    switch (a->result) {

    case NGX_OK:
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "queue api: %s of message %s from %s/", action,
                      ctx->id, where);

        if (a->what == NGX_MAIL_PLUS_QUEUE_SHOW) {
            ngx_http_mail_plus_queue_api_show(o, ctx);
            return NGX_HTTP_OK;
        }

        ngx_http_mail_plus_printf(o, "{\"id\":\"%s\",\"action\":\"%s\","
                                  "\"from\":\"%s\",\"queue\":", ctx->id,
                                  action, where);

        if (a->what == NGX_MAIL_PLUS_QUEUE_DELETE) {
            ngx_http_mail_plus_printf(o, "null}\n");

        } else {
            ngx_http_mail_plus_printf(o, "\"%s\"}\n",
                            a->what == NGX_MAIL_PLUS_QUEUE_HOLD ? "hold"
                                                                : "incoming");
        }

        return NGX_HTTP_OK;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "queue api: %s of message %s: not found", action,
                      ctx->id);

        ngx_http_mail_plus_printf(o, "{\"error\":\"no such message\","
                                  "\"id\":\"%s\"}\n", ctx->id);
        return NGX_HTTP_NOT_FOUND;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "queue api: %s of message %s refused, it is in %s/",
                      action, ctx->id, where);

        ngx_http_mail_plus_printf(o, "{\"error\":\"the message is in %s/\","
                                  "\"id\":\"%s\",\"queue\":\"%s\"}\n",
                                  where, ctx->id, where);
        return NGX_HTTP_CONFLICT;

    default:
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "queue api: %s of message %s failed", action, ctx->id);

        ngx_http_mail_plus_printf(o, "{\"error\":\"the spool failed, see "
                                  "the error log\",\"id\":\"%s\"}\n",
                                  ctx->id);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static void
ngx_http_mail_plus_queue_api_show(ngx_http_mail_plus_out_t *o,
    ngx_http_mail_plus_queue_api_ctx_t *ctx)
{
    ngx_mail_plus_queue_admin_t  *a;

    a = &ctx->admin;

    ngx_http_mail_plus_printf(o, "{\"id\":\"%s\",\"queue\":\"%s\","
                              "\"size\":%O", ctx->id,
                              ngx_mail_plus_queue_dirs[a->where], a->size);

    ngx_http_mail_plus_queue_api_time(o, "next_attempt",
                                a->where == NGX_MAIL_PLUS_QUEUE_IN_DEFERRED
                                ? a->mtime : 0);

    ngx_http_mail_plus_printf(o, ",\"envelope\":");

    if (a->head.len == 0) {
        ngx_http_mail_plus_printf(o, "null}\n");
        return;
    }

    ngx_http_mail_plus_queue_api_envelope(o, &a->record);

    ngx_http_mail_plus_printf(o, "}\n");
}


/* the envelope and the state, as the queue read them (docs/spool.md) */

static void
ngx_http_mail_plus_queue_api_envelope(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_queue_record_t *r)
{
    u_char                      *p, buf[NGX_TIME_T_LEN];
    ngx_str_t                    value;
    ngx_uint_t                   i;
    ngx_mail_plus_queue_rcpt_t  *rcpt;

    /* the recipients, each with its "dsn" line if it has one */

    ngx_http_mail_plus_printf(o, "{\"recipients\":[");

    rcpt = r->rcpts->elts;

    for (i = 0; i < r->rcpts->nelts; i++) {
        ngx_http_mail_plus_printf(o, "%s{\"address\":", i ? "," : "");
        ngx_http_mail_plus_string(o, &rcpt[i].addr);
        ngx_http_mail_plus_printf(o, ",\"state\":\"%s\"",
                                  rcpt[i].done ? "done" : "pending");

        if (rcpt[i].dsn.data) {
            ngx_http_mail_plus_queue_api_field(o, "dsn", &rcpt[i].dsn);
        }

        if (!rcpt[i].done && rcpt[i].error.time) {
            ngx_http_mail_plus_queue_api_last(o, &rcpt[i].error);
        }

        ngx_http_mail_plus_printf(o, "}");
    }

    ngx_http_mail_plus_printf(o, "]");

    /* the fields there are, in the order they are written */

    if (r->arrival) {
        p = ngx_sprintf(buf, "%T", r->arrival);
        value.data = buf;
        value.len = p - buf;

        ngx_http_mail_plus_queue_api_field(o, "arrival", &value);
    }

    if (r->client.data) {
        ngx_http_mail_plus_queue_api_field(o, "client", &r->client);
    }

    if (r->helo.data) {
        ngx_http_mail_plus_queue_api_field(o, "helo", &r->helo);
    }

    if (r->login.data) {
        ngx_http_mail_plus_queue_api_field(o, "login", &r->login);
    }

    if (r->body_type != NGX_MAIL_PLUS_BODY_NONE) {
        ngx_str_set(&value, "7BIT");

        if (r->body_type == NGX_MAIL_PLUS_BODY_8BITMIME) {
            ngx_str_set(&value, "8BITMIME");
        }

        ngx_http_mail_plus_queue_api_field(o, "body", &value);
    }

    if (r->smtputf8_line) {
        ngx_str_set(&value, "no");

        if (r->smtputf8) {
            ngx_str_set(&value, "yes");
        }

        ngx_http_mail_plus_queue_api_field(o, "smtputf8", &value);
    }

    if (r->sender.data) {
        ngx_http_mail_plus_queue_api_field(o, "sender", &r->sender);
    }

    if (r->ret.data) {
        ngx_http_mail_plus_queue_api_field(o, "ret", &r->ret);
    }

    if (r->envid.data) {
        ngx_http_mail_plus_queue_api_field(o, "envid", &r->envid);
    }

    ngx_http_mail_plus_printf(o, "}");

    ngx_http_mail_plus_printf(o, ",\"attempts\":%ui,\"warned\":%s",
                              r->attempts, r->warned ? "true" : "false");
}


/*
 * the last error of a recipient left to try, from the state file:
 * "error": {"time": N, "dsn": "4.4.1", "relay": "host:port" or null,
 * "reply": "..."}
 */

static void
ngx_http_mail_plus_queue_api_last(ngx_http_mail_plus_out_t *o,
    ngx_mail_plus_queue_error_t *err)
{
    ngx_http_mail_plus_printf(o, ",\"error\":{\"time\":%T,\"dsn\":\"%V\","
                              "\"relay\":", err->time, &err->dsn);

    if (err->relay.len) {
        ngx_http_mail_plus_queue_api_text(o, &err->relay);

    } else {
        ngx_http_mail_plus_printf(o, "null");
    }

    ngx_http_mail_plus_printf(o, ",\"reply\":");
    ngx_http_mail_plus_queue_api_text(o, &err->text);
    ngx_http_mail_plus_printf(o, "}");
}


/*
 * an escaped field of the state file as a JSON string: its bytes, where
 * control characters (C0 and C1) are "\u00NN" and a byte that does not
 * start a valid UTF-8 sequence is U+FFFD, so that the answer is valid
 * JSON in UTF-8
 */

static void
ngx_http_mail_plus_queue_api_text(ngx_http_mail_plus_out_t *o,
    ngx_str_t *escaped)
{
    u_char    *p, *q, *s, *last, *start;
    uint32_t   u;
    u_char     buf[NGX_MAIL_PLUS_QUEUE_ERROR_LEN];

    static u_char  hex[] = "0123456789abcdef";

    /* the reader checked it: it stands for this many bytes at most */

    last = ngx_mail_plus_spool_unescape(buf, escaped);

    start = ngx_http_mail_plus_reserve(o, 6 * (last - buf) + 2);
    if (start == NULL) {
        return;
    }

    p = start;
    *p++ = '"';

    for (s = buf; s < last; /* void */) {

        if (*s >= 0x80) {
            q = s;
            u = ngx_utf8_decode(&q, last - s);

            if (u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
                p = ngx_cpymem(p, "\\ufffd", 6);
                s++;
                continue;
            }

            if (u < 0xa0) {
                p = ngx_sprintf(p, "\\u%04xD", u);

            } else {
                p = ngx_cpymem(p, s, q - s);
            }

            s = q;
            continue;
        }

        if (*s < 0x20 || *s == 0x7f) {
            p = ngx_cpymem(p, "\\u00", 4);
            *p++ = hex[*s >> 4];
            *p++ = hex[*s & 0xf];

        } else {
            if (*s == '"' || *s == '\\') {
                *p++ = '\\';
            }

            *p++ = *s;
        }

        s++;
    }

    *p++ = '"';

    o->buf->last = p;
    o->size += p - start;
}


static void
ngx_http_mail_plus_queue_api_field(ngx_http_mail_plus_out_t *o, char *name,
    ngx_str_t *value)
{
    ngx_http_mail_plus_printf(o, ",\"%s\":", name);
    ngx_http_mail_plus_string(o, value);
}


/* a Unix time, null when there is none */

static void
ngx_http_mail_plus_queue_api_time(ngx_http_mail_plus_out_t *o, char *name,
    time_t t)
{
    if (t > 0) {
        ngx_http_mail_plus_printf(o, ",\"%s\":%T", name, t);

    } else {
        ngx_http_mail_plus_printf(o, ",\"%s\":null", name);
    }
}


static ngx_int_t
ngx_http_mail_plus_queue_api_error(ngx_http_request_t *r, ngx_int_t status,
    char *error)
{
    ngx_http_mail_plus_out_t  o;

    ngx_memzero(&o, sizeof(ngx_http_mail_plus_out_t));

    o.request = r;
    o.last = &o.out;

    ngx_http_mail_plus_printf(&o, "{\"error\":\"%s\"}\n", error);

    return ngx_http_mail_plus_send(r, status, "application/json", &o);
}


static char *
ngx_http_mail_plus_queue_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_mail_plus_queue_api_handler;

    return NGX_CONF_OK;
}
