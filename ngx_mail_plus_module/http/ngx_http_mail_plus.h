
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_mail_plus.h"
#include "ngx_http_mail_plus_parse.h"


/*
 * What the HTTP modules share, and only they (ngx_http_mail_plus_request.c):
 * the router's check run for a request, the headers of an answer, answers
 * built in a chain, and a request that waits for the queue's thread pool.
 * What they parse of a client's request, with no request at hand, is
 * declared in ngx_http_mail_plus_parse.h.
 */


/* the router's check, and the handler its answer goes to */

typedef ngx_int_t (*ngx_http_mail_plus_checked_pt)(ngx_http_request_t *r);

ngx_int_t ngx_http_mail_plus_check(ngx_http_request_t *r,
    ngx_mail_plus_check_t *check, ngx_http_mail_plus_checked_pt handler);


/* an answer built in a chain of buffers (JSON or Prometheus text) */

#define NGX_HTTP_MAIL_PLUS_LINE  1024

typedef struct {
    ngx_http_request_t         *request;
    ngx_chain_t                *out;
    ngx_chain_t               **last;
    ngx_buf_t                  *buf;
    off_t                       size;
    ngx_uint_t                  metrics;
    ngx_uint_t                  failed;
} ngx_http_mail_plus_out_t;

void ngx_http_mail_plus_printf(ngx_http_mail_plus_out_t *o,
    const char *fmt, ...);
void ngx_http_mail_plus_string(ngx_http_mail_plus_out_t *o, ngx_str_t *s);
u_char *ngx_http_mail_plus_reserve(ngx_http_mail_plus_out_t *o, size_t size);
ngx_int_t ngx_http_mail_plus_send(ngx_http_request_t *r, ngx_uint_t status,
    char *type, ngx_http_mail_plus_out_t *o);


/* a header of an answer; a value with a control character is refused */

ngx_int_t ngx_http_mail_plus_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);


/* a request that waits for the queue's thread pool, and its return */

ngx_int_t ngx_http_mail_plus_suspend(ngx_http_request_t *r);
void ngx_http_mail_plus_resume(ngx_http_request_t *r,
    ngx_http_mail_plus_checked_pt handler);


#endif /* _NGX_HTTP_MAIL_PLUS_H_INCLUDED_ */
