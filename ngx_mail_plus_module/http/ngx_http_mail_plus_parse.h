
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_PARSE_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_PARSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus.h"


/*
 * What the HTTP modules parse of what clients send, with no request at
 * hand (ngx_http_mail_plus_parse.c): the fuzz targets include this header
 * alone.
 */


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
    ngx_uint_t                  token;     /* NGX_MAIL_PLUS_SASL_OAUTHBEARER,
                                              _XOAUTH2: "password" is the
                                              bearer token */
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


#endif /* _NGX_HTTP_MAIL_PLUS_PARSE_H_INCLUDED_ */
