
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_email.h"


/*
 * The JMAP API (RFC 8620, section 3): a POST of application/json read
 * into memory up to maxSizeRequest, parsed and checked as a request
 * (ngx_http_mail_plus_jmap_request.c), then its calls run in order, each
 * by the method of its name in the tables below, with its result
 * references resolved against the responses before it; a method that
 * answers later holds the next calls until it is done.  The response
 * is bounded: what the calls answer (result references included) takes
 * from a budget of a few times maxSizeRequest, and a call that would
 * overdraw it answers "serverFail".
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_BODY_MIN  16384


static void ngx_http_mail_plus_jmap_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_jmap_append(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, u_char *pos, u_char *last);
static ngx_int_t ngx_http_mail_plus_jmap_start(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_jmap_run(
    ngx_http_mail_plus_jmap_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_jmap_call(
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_http_mail_plus_jmap_call_t *call);
static ngx_http_mail_plus_jmap_method_t *ngx_http_mail_plus_jmap_method(
    const char *name);
static ngx_int_t ngx_http_mail_plus_jmap_respond(
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_list(
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_http_mail_plus_jmap_call_t *call);
static ngx_int_t ngx_http_mail_plus_jmap_answer(
    ngx_http_mail_plus_jmap_ctx_t *ctx);
static ngx_int_t ngx_http_mail_plus_jmap_too_large(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_jmap_echo(
    ngx_http_mail_plus_jmap_call_t *call);


static ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_core[] = {
    { "Core/echo", NGX_HTTP_MAIL_PLUS_JMAP_CORE,
      ngx_http_mail_plus_jmap_echo },
    { NULL, 0, NULL }
};


/* each part's table of methods */

ngx_http_mail_plus_jmap_method_t  *ngx_http_mail_plus_jmap_methods[] = {
    ngx_http_mail_plus_jmap_core,
    ngx_http_mail_plus_jmap_mailbox,
    ngx_http_mail_plus_jmap_email,
    ngx_http_mail_plus_jmap_submission,
    ngx_http_mail_plus_jmap_email_set,
    ngx_http_mail_plus_jmap_email_changes,
    ngx_http_mail_plus_jmap_mailbox_set,
    ngx_http_mail_plus_jmap_mailbox_query,
    NULL
};


ngx_http_mail_plus_jmap_capability_t  ngx_http_mail_plus_jmap_caps[] = {
    { NGX_HTTP_MAIL_PLUS_JMAP_CORE_URN, NGX_HTTP_MAIL_PLUS_JMAP_CORE },
    { NGX_HTTP_MAIL_PLUS_JMAP_MAIL_URN, NGX_HTTP_MAIL_PLUS_JMAP_MAIL },
    { NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION_URN,
      NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION },
    { NULL, 0 }
};


/* the user is known: the body is read, then the calls run */

ngx_int_t
ngx_http_mail_plus_jmap_api(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    ngx_int_t                            rc;
    ngx_str_t                           *type;
    ngx_http_mail_plus_jmap_problem_t    problem;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;

    if (type == NULL
        || type->len < sizeof("application/json") - 1
        || ngx_strncasecmp(type->data, (u_char *) "application/json",
                           sizeof("application/json") - 1)
           != 0
        || (type->len > sizeof("application/json") - 1
            && type->data[sizeof("application/json") - 1] != ';'
            && type->data[sizeof("application/json") - 1] != ' '))
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        problem.type = NGX_HTTP_MAIL_PLUS_JMAP_NOT_JSON;
        problem.detail = "the content type must be application/json";
        problem.limit = NULL;

        return ngx_http_mail_plus_jmap_problem(r, NGX_HTTP_BAD_REQUEST,
                                               &problem);
    }

    if (r->headers_in.content_length_n > (off_t) jlcf->max_size_request) {
        r->keepalive = 0;
        return ngx_http_mail_plus_jmap_too_large(r);
    }

    ctx->budget = ngx_max(4 * jlcf->max_size_request, 1024 * 1024);

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_mail_plus_jmap_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_mail_plus_jmap_body(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_chain_t                    *cl;
    ngx_http_request_body_t        *rb;
    ngx_http_mail_plus_jmap_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_jmap_module);
    rb = r->request_body;

    for ( ;; ) {

        for (cl = rb->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_special(b)) {
                continue;
            }

            if (!ngx_buf_in_memory(b)) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }

            rc = ngx_http_mail_plus_jmap_append(r, ctx, b->pos, b->last);

            b->pos = b->last;

            if (rc == NGX_DECLINED) {
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "http jmap: body over %uz bytes refused",
                               ctx->body_len);
                rc = ngx_http_mail_plus_jmap_too_large(r);
                goto done;
            }

            if (rc != NGX_OK) {
                goto done;
            }
        }

        rb->bufs = NULL;

        if (!r->reading_body) {
            break;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            goto done;
        }

        if (rb->bufs == NULL) {

            if (r->reading_body) {
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "http jmap: %uz bytes of the body read, "
                               "waiting for more", ctx->body_len);
                r->read_event_handler = ngx_http_mail_plus_jmap_body;
                return;
            }

            break;
        }
    }

    r->read_event_handler = ngx_http_block_reading;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: body of %uz bytes read", ctx->body_len);

    rc = ngx_http_mail_plus_jmap_start(r, ctx);

    if (rc == NGX_AGAIN) {
        return;
    }

done:

    ngx_http_finalize_request(r, rc);
}


/*
 * a part of the body, in a buffer that grows up to maxSizeRequest:
 * NGX_OK, NGX_DECLINED when it would go over, or a status
 */

static ngx_int_t
ngx_http_mail_plus_jmap_append(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, u_char *pos, u_char *last)
{
    u_char                              *p;
    size_t                               len, size;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    len = last - pos;

    if (len > jlcf->max_size_request - ctx->body_len) {
        return NGX_DECLINED;
    }

    if (ctx->body_len + len > ctx->body_size) {
        size = ctx->body_size ? 2 * ctx->body_size
                              : NGX_HTTP_MAIL_PLUS_JMAP_BODY_MIN;

        if (r->headers_in.content_length_n > 0 && ctx->body_size == 0) {
            size = r->headers_in.content_length_n;
        }

        size = ngx_max(size, ctx->body_len + len);
        size = ngx_min(size, jlcf->max_size_request);

        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->body_len) {
            ngx_memcpy(p, ctx->body, ctx->body_len);
        }

        if (ctx->body) {
            ngx_pfree(r->pool, ctx->body);
        }

        ctx->body = p;
        ctx->body_size = size;
    }

    ngx_memcpy(ctx->body + ctx->body_len, pos, len);
    ctx->body_len += len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_too_large(ngx_http_request_t *r)
{
    ngx_http_mail_plus_jmap_problem_t  problem;

    problem.type = NGX_HTTP_MAIL_PLUS_JMAP_LIMIT;
    problem.detail = "the request is larger than maxSizeRequest";
    problem.limit = "maxSizeRequest";

    return ngx_http_mail_plus_jmap_problem(r,
                                           NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                           &problem);
}


/* the body is read: parsed and checked, then its calls run */

static ngx_int_t
ngx_http_mail_plus_jmap_start(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    ngx_int_t                            rc;
    ngx_http_mail_plus_jmap_problem_t    problem;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    rc = ngx_http_mail_plus_jmap_parse(ctx->body, ctx->body_len,
                                       jlcf->max_calls,
                                       ngx_http_mail_plus_jmap_caps,
                                       &ctx->req, &problem);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: request parsed: %i, problem %d", rc,
                   (int) problem.type);

    if (rc == NGX_DECLINED) {
        return ngx_http_mail_plus_jmap_problem(r, NGX_HTTP_BAD_REQUEST,
                                               &problem);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->responses = json_array();
    if (ctx->responses == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->next = 0;

    return ngx_http_mail_plus_jmap_run(ctx);
}


/* the calls from ctx->next on: NGX_AGAIN while one waits, or the answer */

static ngx_int_t
ngx_http_mail_plus_jmap_run(ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_jmap_call_t  *call;

    while (ctx->next < json_array_size(ctx->req.calls)) {

        call = ngx_pcalloc(ctx->request->pool,
                           sizeof(ngx_http_mail_plus_jmap_call_t));
        if (call == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        call->ctx = ctx;
        call->request = ctx->request;
        call->index = ctx->next;

        rc = ngx_http_mail_plus_jmap_call(ctx, call);

        if (rc == NGX_AGAIN) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log,
                           0, "http jmap: call %ui \"%s\" waits",
                           call->index, call->name);
            ctx->call = call;
            return NGX_AGAIN;
        }

        if (ngx_http_mail_plus_jmap_respond(ctx, call) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->next++;
    }

    rc = ngx_http_mail_plus_jmap_answer(ctx);

    /* the next page of a listing read while the client reads this one;
       the request ends with it */

    if (rc == NGX_OK && ctx->ahead
        && ngx_http_mail_plus_jmap_ahead_start(ctx) == NGX_AGAIN)
    {
        return NGX_AGAIN;
    }

    return rc;
}


/* a call started: its method found, its references resolved, its handler */

static ngx_int_t
ngx_http_mail_plus_jmap_call(ngx_http_mail_plus_jmap_ctx_t *ctx,
    ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                            *mc;
    ngx_int_t                          rc;
    ngx_http_mail_plus_jmap_method_t  *m;

    mc = json_array_get(ctx->req.calls, call->index);

    call->name = json_string_value(json_array_get(mc, 0));
    call->id = json_string_value(json_array_get(mc, 2));

    m = ngx_http_mail_plus_jmap_method(call->name);

    if (m == NULL || !(ctx->req.using & m->capability)) {
        call->error = "unknownMethod";
        return NGX_OK;
    }

    rc = ngx_http_mail_plus_jmap_resolve(json_array_get(mc, 1),
                                         ctx->responses, &ctx->budget,
                                         &call->args, &call->error);
    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        call->error = "serverFail";
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "http jmap: call %ui \"%s\" started",
                   call->index, m->name);

    rc = m->handler(call);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc != NGX_OK || (call->result == NULL && call->error == NULL)) {
        call->error = "serverFail";
    }

    return NGX_OK;
}


static ngx_http_mail_plus_jmap_method_t *
ngx_http_mail_plus_jmap_method(const char *name)
{
    ngx_uint_t                         i;
    ngx_http_mail_plus_jmap_method_t  *m;

    for (i = 0; ngx_http_mail_plus_jmap_methods[i]; i++) {
        for (m = ngx_http_mail_plus_jmap_methods[i]; m->name; m++) {
            if (ngx_strcmp(m->name, name) == 0) {
                return m;
            }
        }
    }

    return NULL;
}


/*
 * a method that answered later: its response, then the next calls; the
 * request is finalized here once they are all answered
 */

void
ngx_http_mail_plus_jmap_done(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_int_t                       rc;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_mail_plus_jmap_ctx_t  *ctx;

    if (call->finish) {
        call->finish(call);
        return;
    }

    ctx = call->ctx;
    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http jmap: call %ui \"%s\" done", call->index,
                   call->name);

    ctx->call = NULL;
    call->cancel = NULL;

    if (call->result == NULL && call->error == NULL) {
        call->error = "serverFail";
    }

    if (ngx_http_mail_plus_jmap_respond(ctx, call) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ctx->next++;
        rc = ngx_http_mail_plus_jmap_run(ctx);
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* [name, arguments, id] or ["error", {type, description}, id] */

static ngx_int_t
ngx_http_mail_plus_jmap_respond(ngx_http_mail_plus_jmap_ctx_t *ctx,
    ngx_http_mail_plus_jmap_call_t *call)
{
    size_t   cost;
    json_t  *resp, *args;

    if (call->error == NULL) {
        cost = ngx_http_mail_plus_jmap_cost(call->result, ctx->budget);

        if (call->list) {
            cost += call->list->len + sizeof("\"list\":[],") - 1;
        }

        if (cost > ctx->budget) {
            call->error = "serverFail";
            call->description = "the response would be too large";

        } else {
            ctx->budget -= cost;
        }
    }

    if (call->error) {
        args = json_pack("{ss}", "type", call->error);

        if (args && call->description) {
            if (json_object_set_new(args, "description",
                                    json_string(call->description))
                != 0)
            {
                json_decref(args);
                args = NULL;
            }
        }

        resp = args ? json_pack("[sos]", "error", args, call->id) : NULL;

    } else {
        resp = json_pack("[sOs]", call->name, call->result, call->id);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "http jmap: call %ui answered: %s, budget left %uz",
                   call->index, call->error ? call->error : "ok",
                   ctx->budget);

    if (call->result) {
        json_decref(call->result);
        call->result = NULL;
    }

    if (call->args) {
        json_decref(call->args);
        call->args = NULL;
    }

    if (call->list && call->error == NULL) {
        if (ngx_http_mail_plus_jmap_list(ctx, call) != NGX_OK) {
            json_decref(resp);
            return NGX_ERROR;
        }
    }

    if (resp == NULL || json_array_append_new(ctx->responses, resp) != 0) {
        return NGX_ERROR;
    }

    if (call->implicit) {
        resp = call->error ? NULL
                           : json_pack("[sOs]", call->implicit_name,
                                       call->implicit, call->id);

        json_decref(call->implicit);
        call->implicit = NULL;

        if (resp && json_array_append_new(ctx->responses, resp) != 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a response's "list" written already: kept to be put in at the end */

static ngx_int_t
ngx_http_mail_plus_jmap_list(ngx_http_mail_plus_jmap_ctx_t *ctx,
    ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_http_mail_plus_jmap_list_t  *l;

    if (ctx->lists == NULL) {
        ctx->lists = ngx_array_create(ctx->request->pool, 1,
                                      sizeof(ngx_http_mail_plus_jmap_list_t));
        if (ctx->lists == NULL) {
            return NGX_ERROR;
        }
    }

    l = ngx_array_push(ctx->lists);
    if (l == NULL) {
        return NGX_ERROR;
    }

    l->index = json_array_size(ctx->responses);
    l->list = call->list;

    return NGX_OK;
}


/*
 * {methodResponses, sessionState, createdIds}: each value written by
 * jansson, a response with a list written already as
 * [name, {"list": [...], the other arguments}, id]
 */

static ngx_int_t
ngx_http_mail_plus_jmap_answer(ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    json_t                          *resp, *args;
    size_t                           i;
    ngx_str_t                        state;
    ngx_uint_t                       k;
    ngx_http_mail_plus_jmap_list_t  *l;
    ngx_http_mail_plus_jmap_text_t   text;

    if (ngx_http_mail_plus_jmap_state(ctx->request, ctx, &state) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_mail_plus_jmap_text_init(&text, ctx->request->pool);

    if (ngx_http_mail_plus_jmap_text_raw(&text, "{\"methodResponses\":[",
                                         sizeof("{\"methodResponses\":[") - 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    l = ctx->lists ? ctx->lists->elts : NULL;
    k = 0;

    json_array_foreach(ctx->responses, i, resp) {

        if (i && ngx_http_mail_plus_jmap_text_raw(&text, ",", 1) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (l == NULL || k == ctx->lists->nelts || l[k].index != i) {
            if (ngx_http_mail_plus_jmap_text_json(&text, resp, 0) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            continue;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                       "http jmap: response %uz has its list written, "
                       "%uz bytes", i, l[k].list->len);

        args = json_array_get(resp, 1);

        if (ngx_http_mail_plus_jmap_text_raw(&text, "[", 1) != NGX_OK
            || ngx_http_mail_plus_jmap_text_json(&text,
                                                 json_array_get(resp, 0), 0)
               != NGX_OK
            || ngx_http_mail_plus_jmap_text_raw(&text, ",{\"list\":[",
                                                sizeof(",{\"list\":[") - 1)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_mail_plus_jmap_text_append(&text, l[k].list);

        if (ngx_http_mail_plus_jmap_text_raw(&text, "]", 1) != NGX_OK
            || (json_object_size(args)
                ? ngx_http_mail_plus_jmap_text_raw(&text, ",", 1)
                  != NGX_OK
                  || ngx_http_mail_plus_jmap_text_json(&text, args, 1)
                     != NGX_OK
                : ngx_http_mail_plus_jmap_text_raw(&text, "}", 1) != NGX_OK)
            || ngx_http_mail_plus_jmap_text_raw(&text, ",", 1) != NGX_OK
            || ngx_http_mail_plus_jmap_text_json(&text,
                                                 json_array_get(resp, 2), 0)
               != NGX_OK
            || ngx_http_mail_plus_jmap_text_raw(&text, "]", 1) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        k++;
    }

    resp = json_stringn((const char *) state.data, state.len);

    if (resp == NULL
        || ngx_http_mail_plus_jmap_text_raw(&text, "],\"sessionState\":",
                                            sizeof("],\"sessionState\":") - 1)
           != NGX_OK
        || ngx_http_mail_plus_jmap_text_json(&text, resp, 0) != NGX_OK)
    {
        json_decref(resp);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_decref(resp);

    if (ctx->req.created_ids && !ctx->created_implicit
        && (ngx_http_mail_plus_jmap_text_raw(&text, ",\"createdIds\":",
                                             sizeof(",\"createdIds\":") - 1)
            != NGX_OK
            || ngx_http_mail_plus_jmap_text_json(&text, ctx->req.created_ids,
                                                 0)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_mail_plus_jmap_text_raw(&text, "}", 1) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_mail_plus_jmap_text_send(ctx->request, NGX_HTTP_OK,
                                             "application/json", &text);
}


/*
 * whether a later call refers to this call's result ("#name":
 * {"resultOf": this call's id, ...}): then its answer must stay whole
 * until the end
 */

ngx_uint_t
ngx_http_mail_plus_jmap_referenced(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t      *c, *args, *v, *of;
    size_t       i;
    const char  *key;

    json_array_foreach(call->ctx->req.calls, i, c) {
        if (i <= call->index) {
            continue;
        }

        args = json_array_get(c, 1);

        json_object_foreach(args, key, v) {
            if (key[0] != '#') {
                continue;
            }

            of = json_object_get(v, "resultOf");

            if (json_is_string(of)
                && ngx_strcmp(json_string_value(of), call->id) == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


/* the request's end, or its loss: a waiting call stops, the JSON goes */

void
ngx_http_mail_plus_jmap_api_cleanup(ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    ngx_http_mail_plus_jmap_call_t  *call;

    call = ctx->call;

    if (call) {
        ctx->call = NULL;

        if (call->cancel) {
            call->cancel(call);
        }

        if (call->result) {
            json_decref(call->result);
        }

        if (call->args) {
            json_decref(call->args);
        }

        if (call->implicit) {
            json_decref(call->implicit);
        }
    }

    if (ctx->responses) {
        json_decref(ctx->responses);
        ctx->responses = NULL;
    }

    if (ctx->created_implicit) {
        json_decref(ctx->req.created_ids);
        ctx->req.created_ids = NULL;
        ctx->created_implicit = 0;
    }

    if (ctx->req.root) {
        json_decref(ctx->req.root);
        ctx->req.root = NULL;
    }
}


/*
 * creation ids (section 5.3): a "/set" records what it created, and a
 * later call names it "#" and the creation id; the map is the request's
 * "createdIds", answered with the response when the request had one
 */

ngx_int_t
ngx_http_mail_plus_jmap_created(ngx_http_mail_plus_jmap_ctx_t *ctx,
    const char *creation_id, const char *id)
{
    json_t  *v;

    if (ctx->req.created_ids == NULL) {
        ctx->req.created_ids = json_object();
        if (ctx->req.created_ids == NULL) {
            return NGX_ERROR;
        }

        ctx->created_implicit = 1;   /* freed by the cleanup */
    }

    v = json_string(id);

    if (v == NULL || json_object_set_new(ctx->req.created_ids, creation_id, v)
                     != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * the creation ids of a "create" (or "emails") object: each an Id (RFC
 * 8620, 1.2: 1 to 255 bytes of "A-Za-z0-9", "-" and "_"), as a later
 * call names it after "#" and a log line may show it; NGX_DECLINED with
 * the call's error set
 */

ngx_int_t
ngx_http_mail_plus_jmap_creation_ids(ngx_http_mail_plus_jmap_call_t *call,
    json_t *create)
{
    json_t      *v;
    size_t       i, len;
    const char  *key;

    json_object_foreach(create, key, v) {
        len = ngx_strlen(key);

        for (i = 0; i < len; i++) {
            if (!((key[i] >= 'A' && key[i] <= 'Z')
                  || (key[i] >= 'a' && key[i] <= 'z')
                  || (key[i] >= '0' && key[i] <= '9')
                  || key[i] == '-' || key[i] == '_'))
            {
                break;
            }
        }

        if (len == 0 || len > 255 || i < len) {
            call->error = "invalidArguments";
            call->description = "a creation id that is not an Id";
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* an id argument: "#" and a creation id resolved, else the id as it is */

const char *
ngx_http_mail_plus_jmap_id(ngx_http_mail_plus_jmap_ctx_t *ctx,
    const char *id)
{
    if (id == NULL || id[0] != '#') {
        return id;
    }

    if (ctx->req.created_ids == NULL) {
        return NULL;
    }

    return json_string_value(json_object_get(ctx->req.created_ids, id + 1));
}


/* a call's account: the user's one */

ngx_int_t
ngx_http_mail_plus_jmap_account(ngx_http_mail_plus_jmap_call_t *call)
{
    json_t                         *id;
    ngx_http_mail_plus_jmap_ctx_t  *ctx;

    ctx = call->ctx;
    id = json_object_get(call->args, "accountId");

    if (!json_is_string(id)) {
        call->error = "invalidArguments";
        call->description = "accountId is missing or not a string";
        return NGX_DECLINED;
    }

    /* the length jansson keeps: a NUL inside does not end the string */

    if (json_string_length(id) != ctx->account_id.len
        || ngx_strncmp(json_string_value(id), ctx->account_id.data,
                       ctx->account_id.len)
           != 0)
    {
        call->error = "accountNotFound";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* Core/echo (section 4): the arguments, as they are once resolved */

static ngx_int_t
ngx_http_mail_plus_jmap_echo(ngx_http_mail_plus_jmap_call_t *call)
{
    call->result = json_incref(call->args);

    return NGX_OK;
}
