
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_mail.h>
#include "ngx_http_mail_plus.h"


/*
 * What the HTTP modules (auth_http, submission, status, queue API) share:
 * a login check of the router on behalf of a request, a header of the
 * answer, an answer built in a chain of buffers, and the wait of a
 * request for the queue's thread pool.
 */


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_mail_plus_checked_pt   handler;
} ngx_http_mail_plus_check_ctx_t;


static void ngx_http_mail_plus_checked(ngx_mail_plus_check_t *check);


/*
 * the check is started; the handler gets the request when the router has
 * answered, and its result finalizes the request; NGX_DONE while a thread
 * checks the password
 */

ngx_int_t
ngx_http_mail_plus_check(ngx_http_request_t *r, ngx_mail_plus_check_t *check,
    ngx_http_mail_plus_checked_pt handler)
{
    ngx_int_t                        rc;
    ngx_http_mail_plus_check_ctx_t  *cc;

    cc = ngx_palloc(r->pool, sizeof(ngx_http_mail_plus_check_ctx_t));
    if (cc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cc->request = r;
    cc->handler = handler;

    check->handler = ngx_http_mail_plus_checked;
    check->data = cc;

    rc = ngx_mail_plus_check_start(check);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http mail: credentials to the router: %i", rc);

    if (rc == NGX_AGAIN) {
        r->main->blocked++;
        r->main->count++;
        r->aio = 1;
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return handler(r);
}


static void
ngx_http_mail_plus_checked(ngx_mail_plus_check_t *check)
{
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_mail_plus_check_ctx_t  *cc;

    cc = check->data;
    r = cc->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http mail: credentials checked, route status %ui",
                   check->route.status);

    r->main->blocked--;
    r->aio = 0;

    ngx_http_finalize_request(r, cc->handler(r));
    ngx_http_run_posted_requests(c);
}


/*
 * every header the HTTP modules write goes through here: a value with a
 * control character (CR, LF and NUL among them) could end the header and
 * start one the client chose, so it is refused, whatever its source
 */

ngx_int_t
ngx_http_mail_plus_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_str_t         escaped;
    ngx_table_elt_t  *h;

    if (ngx_mail_plus_text_has_ctl(value)) {

        if (ngx_mail_plus_text_log(r->pool, value, &escaped) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mail_plus: a control character in the value of the "
                      "header \"%s\" refused: \"%V\"", name, &escaped);
        return NGX_ERROR;
    }

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


/* no more than NGX_HTTP_MAIL_PLUS_LINE bytes: no unbounded %V */

void
ngx_http_mail_plus_printf(ngx_http_mail_plus_out_t *o,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = ngx_http_mail_plus_reserve(o, NGX_HTTP_MAIL_PLUS_LINE);
    if (p == NULL) {
        return;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + NGX_HTTP_MAIL_PLUS_LINE, fmt, args);
    va_end(args);

    o->buf->last = last;
    o->size += last - p;
}


/*
 * a quoted string: a JSON string, or a Prometheus label value, where only
 * backslash, double quote and line feed are escaped
 */

void
ngx_http_mail_plus_string(ngx_http_mail_plus_out_t *o,
    ngx_str_t *s)
{
    u_char      *p, *start;
    size_t       len;
    ngx_uint_t   i;

    if (o->metrics) {
        len = s->len;

        for (i = 0; i < s->len; i++) {
            if (s->data[i] == '\\' || s->data[i] == '"'
                || s->data[i] == '\n')
            {
                len++;
            }
        }

    } else {
        len = s->len + ngx_escape_json(NULL, s->data, s->len);
    }

    start = ngx_http_mail_plus_reserve(o, len + 2);
    if (start == NULL) {
        return;
    }

    p = start;
    *p++ = '"';

    if (o->metrics) {
        for (i = 0; i < s->len; i++) {
            if (s->data[i] == '\n') {
                *p++ = '\\';
                *p++ = 'n';
                continue;
            }

            if (s->data[i] == '\\' || s->data[i] == '"') {
                *p++ = '\\';
            }

            *p++ = s->data[i];
        }

    } else {
        p = (u_char *) ngx_escape_json(p, s->data, s->len);
    }

    *p++ = '"';

    o->buf->last = p;
    o->size += p - start;
}


/* room for "size" bytes at o->buf->last, in a new buffer if need be */

u_char *
ngx_http_mail_plus_reserve(ngx_http_mail_plus_out_t *o,
    size_t size)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (o->failed) {
        return NULL;
    }

    if (o->buf && (size_t) (o->buf->end - o->buf->last) >= size) {
        return o->buf->last;
    }

    b = ngx_create_temp_buf(o->request->pool, ngx_max(size, 4096));
    if (b == NULL) {
        o->failed = 1;
        return NULL;
    }

    cl = ngx_alloc_chain_link(o->request->pool);
    if (cl == NULL) {
        o->failed = 1;
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *o->last = cl;
    o->last = &cl->next;
    o->buf = b;

    return b->last;
}


/* the answer built in a chain: its status, type and length, then itself */

ngx_int_t
ngx_http_mail_plus_send(ngx_http_request_t *r, ngx_uint_t status, char *type,
    ngx_http_mail_plus_out_t *o)
{
    ngx_int_t  rc;

    if (o->failed || o->buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = status;
    r->headers_out.content_length_n = o->size;

    o->buf->last_buf = (r == r->main) ? 1 : 0;
    o->buf->last_in_chain = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http mail: answer %ui, %s, %O bytes",
                   status, type, o->size);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, o->out);
}


/*
 * a request waits for work in the queue's thread pool, as nginx's own
 * aio reads make it wait; the content handler returns this
 */

ngx_int_t
ngx_http_mail_plus_suspend(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http mail: request waits for the queue's thread");

    r->main->blocked++;
    r->main->count++;
    r->aio = 1;

    return NGX_DONE;
}


/* the work is done: the handler's result finalizes the request */

void
ngx_http_mail_plus_resume(ngx_http_request_t *r,
    ngx_http_mail_plus_checked_pt handler)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http mail: the queue's work done, request resumed");

    r->main->blocked--;
    r->aio = 0;

    ngx_http_finalize_request(r, handler(r));
    ngx_http_run_posted_requests(c);
}
