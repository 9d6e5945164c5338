
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


/* what the HTTP modules share (ngx_http_mail_plus_request.c) */

typedef ngx_int_t (*ngx_http_mail_plus_checked_pt)(ngx_http_request_t *r);


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


ngx_int_t ngx_http_mail_plus_check(ngx_http_request_t *r,
    ngx_mail_plus_check_t *check, ngx_http_mail_plus_checked_pt handler);
ngx_int_t ngx_http_mail_plus_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
void ngx_http_mail_plus_printf(ngx_http_mail_plus_out_t *o,
    const char *fmt, ...);
void ngx_http_mail_plus_string(ngx_http_mail_plus_out_t *o, ngx_str_t *s);
u_char *ngx_http_mail_plus_reserve(ngx_http_mail_plus_out_t *o, size_t size);
ngx_int_t ngx_http_mail_plus_send(ngx_http_request_t *r, ngx_uint_t status,
    char *type, ngx_http_mail_plus_out_t *o);
ngx_int_t ngx_http_mail_plus_suspend(ngx_http_request_t *r);
void ngx_http_mail_plus_resume(ngx_http_request_t *r,
    ngx_http_mail_plus_checked_pt handler);


#endif /* _NGX_HTTP_MAIL_PLUS_H_INCLUDED_ */
