
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_mail_plus.h"


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


/* an auth_http request of stock nginx (ngx_http_mail_plus_parse.c) */

typedef struct {
    ngx_str_t                   method;    /* the headers, as sent */
    ngx_str_t                   user;      /* %-escaped by nginx */
    ngx_str_t                   pass;      /* %-escaped by nginx */
    ngx_str_t                   protocol;
    ngx_str_t                   rcpt;      /* "RCPT TO:<...>" */
    ngx_str_t                   salt;
    ngx_str_t                   client;

    ngx_uint_t                  proto;     /* NGX_MAIL_PLUS_IMAP ... */
    ngx_uint_t                  digest;    /* NGX_MAIL_AUTH_PLAIN ... */
    ngx_str_t                   login;     /* decoded; for "none" the
                                              recipient's address */
    ngx_str_t                   password;  /* decoded */
    unsigned                    none:1;    /* unauthenticated SMTP */
    unsigned                    unsupported:1;
} ngx_http_mail_plus_auth_request_t;


/* the query string of a submission */

typedef struct {
    ngx_array_t                 to;        /* ngx_str_t, decoded */
    ngx_str_t                   from;
    ngx_str_t                   notify;
    ngx_str_t                   ret;
    ngx_str_t                   envid;
    ngx_uint_t                  has_from;
} ngx_http_mail_plus_submit_query_t;


ngx_int_t ngx_http_mail_plus_unescape(ngx_str_t *src, u_char *dst,
    size_t *len);
ngx_int_t ngx_http_mail_plus_auth_header(
    ngx_http_mail_plus_auth_request_t *ar, ngx_str_t *key, ngx_str_t *value);
ngx_int_t ngx_http_mail_plus_auth_request(
    ngx_http_mail_plus_auth_request_t *ar, ngx_pool_t *pool, char **err);
ngx_int_t ngx_http_mail_plus_submit_query(ngx_str_t *args, ngx_pool_t *pool,
    ngx_http_mail_plus_submit_query_t *q, char **err);

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
