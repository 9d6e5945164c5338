
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_BLOB_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_BLOB_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Blobs (ngx_http_mail_plus_jmap_blob.c, RFC 8620 6): <prefix>upload/
 * and <prefix>download/ once the login is checked, and the store of
 * uploads ("mail_plus_jmap_upload_path": a directory per account, a file
 * per blob named by its id, "U" and the SHA-256 of its bytes in hex).
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_UPLOAD_ID_LEN  (1 + 64)


/* the resources, after the login: the answer's status, or NGX_DONE */
ngx_int_t ngx_http_mail_plus_jmap_upload(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *tail);
ngx_int_t ngx_http_mail_plus_jmap_download(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *tail);

/* an upload's bytes, read into r's pool: NGX_OK, NGX_DECLINED (not an
   upload id, none, or expired), NGX_ERROR */
ngx_int_t ngx_http_mail_plus_jmap_upload_read(ngx_http_request_t *r,
    ngx_str_t *account_id, ngx_str_t *blob_id, ngx_str_t *bytes);


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_BLOB_H_INCLUDED_ */
