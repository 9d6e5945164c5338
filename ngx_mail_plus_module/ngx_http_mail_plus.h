
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


ngx_int_t ngx_http_mail_plus_check(ngx_http_request_t *r,
    ngx_mail_plus_check_t *check, ngx_http_mail_plus_checked_pt handler);
ngx_int_t ngx_http_mail_plus_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_MAIL_PLUS_H_INCLUDED_ */
