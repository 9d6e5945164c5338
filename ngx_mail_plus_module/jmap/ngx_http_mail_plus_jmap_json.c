
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * A JSON answer being written: each value is dumped by jansson straight
 * into the request's buffers, whole, with json_dumpb() (into what the
 * last buffer has left, else a new one; no copy of the whole text); the
 * writer only adds the punctuation between values it is told to, so that
 * the parts of an answer may be written at different times: an
 * Email/get's objects as their messages arrive, the rest of the answer at
 * its end.  The long strings of an answer, body values, are escaped by
 * nginx instead: jansson walks a string character by character and hands
 * each run between two escapes to its output, which made its dump most of
 * the worker's time.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_TEXT_SIZE  32768


static ngx_buf_t *ngx_http_mail_plus_jmap_text_buf(
    ngx_http_mail_plus_jmap_text_t *text, size_t size);


void
ngx_http_mail_plus_jmap_text_init(ngx_http_mail_plus_jmap_text_t *text,
    ngx_pool_t *pool)
{
    ngx_memzero(text, sizeof(ngx_http_mail_plus_jmap_text_t));
    text->pool = pool;
    text->last = &text->out;
}


/* a value as jansson writes it, whole in one piece of the buffers;
   skip_open leaves out its first byte (an object's "{", to write more
   members in front of its own) */

ngx_int_t
ngx_http_mail_plus_jmap_text_json(ngx_http_mail_plus_jmap_text_t *text,
    json_t *json, ngx_uint_t skip_open)
{
    ngx_str_t  piece;

    if (ngx_http_mail_plus_jmap_text_piece(text, json, &piece) != NGX_OK) {
        return NGX_ERROR;
    }

    if (skip_open && piece.len) {
        ngx_memmove(piece.data, piece.data + 1, piece.len - 1);
        text->buf->last--;
        text->len--;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_mail_plus_jmap_text_raw(ngx_http_mail_plus_jmap_text_t *text,
    const char *s, size_t len)
{
    size_t      n;
    ngx_buf_t  *b;

    text->len += len;

    while (len) {
        b = text->buf;

        if (b == NULL || b->last == b->end) {
            b = ngx_http_mail_plus_jmap_text_buf(text, len);
            if (b == NULL) {
                return NGX_ERROR;
            }
        }

        n = ngx_min(len, (size_t) (b->end - b->last));
        b->last = ngx_cpymem(b->last, s, n);
        s += n;
        len -= n;
    }

    return NGX_OK;
}


/*
 * a string of UTF-8 (checked or made so before: bytes from 0x80 pass as
 * they are), quoted and escaped by nginx's ngx_escape_json straight into
 * the buffers, with no tree of jansson's around it; in one pass: each run
 * of the string is one that fits the room left even if every byte of it
 * took six ("\u001F"), and a buffer with little room left is left
 */

#define NGX_HTTP_MAIL_PLUS_JMAP_TEXT_RUN  256

ngx_int_t
ngx_http_mail_plus_jmap_text_string(ngx_http_mail_plus_jmap_text_t *text,
    u_char *s, size_t len)
{
    u_char     *p;
    size_t      n, room;
    ngx_buf_t  *b;

    if (ngx_http_mail_plus_jmap_text_raw(text, "\"", 1) != NGX_OK) {
        return NGX_ERROR;
    }

    while (len) {
        b = text->buf;
        room = (size_t) (b->end - b->last) / 6;

        if (room < ngx_min(len, NGX_HTTP_MAIL_PLUS_JMAP_TEXT_RUN)) {
            b = ngx_http_mail_plus_jmap_text_buf(text, 0);
            if (b == NULL) {
                return NGX_ERROR;
            }

            room = (size_t) (b->end - b->last) / 6;
        }

        n = ngx_min(len, room);

        p = (u_char *) ngx_escape_json(b->last, s, n);

        text->len += p - b->last;
        b->last = p;
        s += n;
        len -= n;
    }

    return ngx_http_mail_plus_jmap_text_raw(text, "\"", 1);
}


/* a value written whole into one piece of the buffers, and where it is:
   for a text kept aside, whose pieces are copied into an answer later */

ngx_int_t
ngx_http_mail_plus_jmap_text_piece(ngx_http_mail_plus_jmap_text_t *text,
    json_t *json, ngx_str_t *piece)
{
    size_t      n, room;
    ngx_buf_t  *b;

    b = text->buf;
    room = b ? (size_t) (b->end - b->last) : 0;

    n = (room == 0) ? json_dumpb(json, NULL, 0, JSON_COMPACT|JSON_ENCODE_ANY)
                    : json_dumpb(json, (char *) b->last, room,
                                 JSON_COMPACT|JSON_ENCODE_ANY);
    if (n == 0) {
        return NGX_ERROR;
    }

    if (n > room) {
        b = ngx_http_mail_plus_jmap_text_buf(text, n);
        if (b == NULL) {
            return NGX_ERROR;
        }

        if (json_dumpb(json, (char *) b->last, b->end - b->last,
                       JSON_COMPACT|JSON_ENCODE_ANY)
            != n)
        {
            return NGX_ERROR;
        }
    }

    piece->data = b->last;
    piece->len = n;

    b->last += n;
    text->len += n;

    return NGX_OK;
}


/* another writer's text, its buffers taken as they are */

void
ngx_http_mail_plus_jmap_text_append(ngx_http_mail_plus_jmap_text_t *text,
    ngx_http_mail_plus_jmap_text_t *more)
{
    if (more->out == NULL) {
        return;
    }

    *text->last = more->out;
    text->last = more->last;
    text->buf = more->buf;
    text->len += more->len;

    more->out = NULL;
    more->last = &more->out;
    more->buf = NULL;
    more->len = 0;
}


/* a new last buffer, of at least size bytes */

static ngx_buf_t *
ngx_http_mail_plus_jmap_text_buf(ngx_http_mail_plus_jmap_text_t *text,
    size_t size)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_create_temp_buf(text->pool,
                            ngx_max(size, NGX_HTTP_MAIL_PLUS_JMAP_TEXT_SIZE));
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(text->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;
    *text->last = cl;
    text->last = &cl->next;
    text->buf = b;

    return b;
}


/* the answer: its headers and the text, which ends it */

ngx_int_t
ngx_http_mail_plus_jmap_text_send(ngx_http_request_t *r, ngx_uint_t status,
    char *type, ngx_http_mail_plus_jmap_text_t *text)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    if (ngx_http_mail_plus_jmap_text_raw(text, "\n", 1) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (cl = text->out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->last_buf = (r == r->main) ? 1 : 0;
    cl->buf->last_in_chain = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: answer %ui, %uz bytes", status, text->len);

    r->headers_out.status = status;
    r->headers_out.content_length_n = text->len;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, text->out);
}


/* a whole answer of one value */

ngx_int_t
ngx_http_mail_plus_jmap_send_json(ngx_http_request_t *r, ngx_uint_t status,
    char *type, json_t *json)
{
    ngx_http_mail_plus_jmap_text_t  text;

    ngx_http_mail_plus_jmap_text_init(&text, r->pool);

    if (ngx_http_mail_plus_jmap_text_json(&text, json, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_mail_plus_jmap_text_send(r, status, type, &text);
}
