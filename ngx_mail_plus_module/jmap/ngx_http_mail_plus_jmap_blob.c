
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/evp.h>
#include "ngx_http_mail_plus.h"
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_blob.h"
#include "ngx_http_mail_plus_jmap_message.h"


/*
 * Uploads and downloads (RFC 8620 6.1, 6.2).
 *
 * An upload's body is written by nginx's request body machinery to a
 * temporary file (client_body_temp_path), hashed, and moved into the
 * store as <upload_path>/<accountId>/U<sha256 hex>; the same bytes give
 * the same blob.  Whenever an account uploads or reads, its expired files
 * (older than "mail_plus_jmap_upload_expire") are removed and the rest
 * counted against "mail_plus_jmap_upload_quota".
 *
 * A download of "U..." sends the stored file; of "B..." (a message) or
 * "P..." (a part, decoded), the mailbox is EXAMINEd, its UIDVALIDITY
 * checked against the id's, and the bytes fetched with UID FETCH
 * BODY.PEEK[] or BINARY.PEEK[part]: the answer is the IMAP literal, which
 * the IMAP reader's limits bound.
 */


#define NGX_HTTP_MAIL_PLUS_JMAP_READ_SIZE  65536


typedef struct {
    ngx_http_mail_plus_jmap_call_t      call;     /* of no method: for the
                                                     mailbox list */
    ngx_http_mail_plus_jmap_ref_t       ref;
    u_char                              kind;     /* 'B' or 'P' */
    ngx_str_t                           type;
    ngx_str_t                           name;
    ngx_str_t                           body;
    unsigned                            found:1;
} ngx_http_mail_plus_jmap_download_t;


static void ngx_http_mail_plus_jmap_upload_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_mail_plus_jmap_upload_store(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_temp_file_t *tf, off_t size,
    u_char *id);
static ngx_int_t ngx_http_mail_plus_jmap_upload_hash(ngx_http_request_t *r,
    ngx_temp_file_t *tf, off_t size, u_char *id);
static ngx_int_t ngx_http_mail_plus_jmap_account_dir(ngx_http_request_t *r,
    ngx_str_t *account_id, ngx_str_t *dir);
static ngx_int_t ngx_http_mail_plus_jmap_sweep(ngx_http_request_t *r,
    ngx_str_t *dir, off_t *total);
static ngx_int_t ngx_http_mail_plus_jmap_blob_answer(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, u_char *id, off_t size);
static ngx_int_t ngx_http_mail_plus_jmap_download_headers(
    ngx_http_request_t *r, ngx_str_t *type, ngx_str_t *name, off_t size);
static ngx_int_t ngx_http_mail_plus_jmap_download_file(ngx_http_request_t *r,
    ngx_str_t *account_id, ngx_str_t *blob_id, ngx_str_t *type,
    ngx_str_t *name);
static ngx_int_t ngx_http_mail_plus_jmap_download_imap(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *blob_id, ngx_str_t *type,
    ngx_str_t *name);
static void ngx_http_mail_plus_jmap_download_mailboxes(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_download_examined(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_http_mail_plus_jmap_download_data(
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_imap_response_t *resp);
static void ngx_http_mail_plus_jmap_download_fetched(
    ngx_mail_plus_imap_cmd_t *cmd);
static void ngx_http_mail_plus_jmap_download_end(
    ngx_http_mail_plus_jmap_download_t *dl, ngx_int_t rc);
static ngx_int_t ngx_http_mail_plus_jmap_disposition(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_int_t ngx_http_mail_plus_jmap_upload_id(ngx_str_t *id);
static ngx_int_t ngx_http_mail_plus_jmap_not_found(ngx_http_request_t *r,
    const char *detail);


/* "upload/{accountId}/": the body into a temporary file, then stored */

ngx_int_t
ngx_http_mail_plus_jmap_upload(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *tail)
{
    ngx_int_t                            rc;
    ngx_http_mail_plus_jmap_problem_t    problem;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    /* tail: "upload/" and the account id and "/" */

    if (tail->len != sizeof("upload//") - 1 + ctx->account_id.len
        || ngx_strncmp(tail->data + sizeof("upload/") - 1,
                       ctx->account_id.data, ctx->account_id.len)
           != 0
        || tail->data[tail->len - 1] != '/')
    {
        return ngx_http_mail_plus_jmap_not_found(r, "no such account");
    }

    if (r->headers_in.content_length_n > (off_t) jlcf->max_size_upload) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "http jmap: upload of %O bytes refused",
                      r->headers_in.content_length_n);

        problem.type = NGX_HTTP_MAIL_PLUS_JMAP_LIMIT;
        problem.detail = "the upload is larger than maxSizeUpload";
        problem.limit = "maxSizeUpload";

        return ngx_http_mail_plus_jmap_problem(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         &problem);
    }

    r->request_body_in_file_only = 1;
    r->request_body_in_persistent_file = 1;
    r->request_body_in_clean_file = 1;
    r->request_body_file_log_level = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap upload: reading the body, %O bytes announced",
                   r->headers_in.content_length_n);

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_mail_plus_jmap_upload_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_mail_plus_jmap_upload_body(ngx_http_request_t *r)
{
    off_t                                size;
    u_char                               id[1 + 64];
    ngx_int_t                            rc;
    ngx_temp_file_t                     *tf;
    ngx_http_mail_plus_jmap_ctx_t       *ctx;
    ngx_http_mail_plus_jmap_problem_t    problem;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_mail_plus_jmap_module);

    tf = r->request_body ? r->request_body->temp_file : NULL;
    size = tf ? tf->file.offset : 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap upload: body of %O bytes read", size);

    if (size > (off_t) jlcf->max_size_upload) {
        problem.type = NGX_HTTP_MAIL_PLUS_JMAP_LIMIT;
        problem.detail = "the upload is larger than maxSizeUpload";
        problem.limit = "maxSizeUpload";

        rc = ngx_http_mail_plus_jmap_problem(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         &problem);
        goto done;
    }

    if (ngx_http_mail_plus_jmap_upload_hash(r, tf, size, id) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_http_mail_plus_jmap_upload_store(r, ctx, tf, size, id);

    if (rc == NGX_OK) {
        rc = ngx_http_mail_plus_jmap_blob_answer(r, ctx, id, size);

    } else if (rc == NGX_DECLINED) {
        problem.type = NGX_HTTP_MAIL_PLUS_JMAP_LIMIT;
        problem.detail = "overQuota: the account's uploads exceed their "
                         "quota";
        problem.limit = "uploadQuota";

        rc = ngx_http_mail_plus_jmap_problem(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         &problem);
    }

done:

    ngx_http_finalize_request(r, rc);
}


/* the SHA-256 of the file (or of nothing), "U" and its hex */

static ngx_int_t
ngx_http_mail_plus_jmap_upload_hash(ngx_http_request_t *r,
    ngx_temp_file_t *tf, off_t size, u_char *id)
{
    off_t          offset;
    u_char        *buf, digest[EVP_MAX_MD_SIZE];
    ssize_t        n;
    ngx_int_t      rc;
    unsigned int   len;
    EVP_MD_CTX    *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    buf = NULL;

    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        goto failed;
    }

    if (tf) {
        buf = ngx_alloc(NGX_HTTP_MAIL_PLUS_JMAP_READ_SIZE, r->connection->log);
        if (buf == NULL) {
            goto failed;
        }

        /* ngx_read_file() moves file.offset: the size is the caller's */

        for (offset = 0; offset < size; offset += n) {
            n = ngx_read_file(&tf->file, buf,
                              NGX_HTTP_MAIL_PLUS_JMAP_READ_SIZE, offset);
            if (n <= 0) {
                goto failed;
            }

            if (EVP_DigestUpdate(md, buf, n) != 1) {
                goto failed;
            }
        }
    }

    if (EVP_DigestFinal_ex(md, digest, &len) != 1 || len != 32) {
        goto failed;
    }

    id[0] = 'U';
    ngx_hex_dump(id + 1, digest, 32);

    rc = NGX_OK;

failed:

    if (buf) {
        ngx_free(buf);
    }

    EVP_MD_CTX_free(md);

    return rc;
}


/*
 * the file moved into the account's directory, expired ones removed:
 * NGX_OK, NGX_DECLINED (over the quota), or an HTTP status
 */

static ngx_int_t
ngx_http_mail_plus_jmap_upload_store(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_temp_file_t *tf, off_t size,
    u_char *id)
{
    off_t                                total;
    ngx_fd_t                             fd;
    ngx_str_t                            dir, to;
    ngx_ext_rename_file_t                ext;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    if (ngx_http_mail_plus_jmap_account_dir(r, &ctx->account_id, &dir)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_create_dir(dir.data, 0700) == NGX_FILE_ERROR
        && ngx_errno != NGX_EEXIST)
    {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_create_dir_n " \"%s\" failed", dir.data);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_mail_plus_jmap_sweep(r, &dir, &total) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (total + size > jlcf->upload_quota) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "http jmap: upload of %O bytes over the account's "
                      "quota, %O bytes stored", size, total);

        return NGX_DECLINED;
    }

    to.len = dir.len + 1 + NGX_HTTP_MAIL_PLUS_JMAP_UPLOAD_ID_LEN;
    to.data = ngx_pnalloc(r->pool, to.len + 1);
    if (to.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(to.data, "%V/%*s%Z", &dir,
                (size_t) NGX_HTTP_MAIL_PLUS_JMAP_UPLOAD_ID_LEN, id);

    if (tf == NULL) {
        fd = ngx_open_file(to.data, NGX_FILE_WRONLY, NGX_FILE_CREATE_OR_OPEN,
                           0600);
        if (fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          ngx_open_file_n " \"%s\" failed", to.data);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) ngx_close_file(fd);

        return NGX_OK;
    }

    ext.access = 0600;
    ext.path_access = 0700;
    ext.time = -1;
    ext.create_path = 0;
    ext.delete_file = 1;
    ext.log = r->connection->log;

    /* the same bytes again replace the file: a fresh time to expire */

    if (ngx_ext_rename_file(&tf->file.name, &to, &ext) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap upload: stored as \"%s\", %O bytes",
                   to.data, size);

    return NGX_OK;
}


/* "<upload_path>/<accountId>", NUL-terminated */

static ngx_int_t
ngx_http_mail_plus_jmap_account_dir(ngx_http_request_t *r,
    ngx_str_t *account_id, ngx_str_t *dir)
{
    ngx_str_t                           *path;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    path = &jlcf->upload_path->name;

    dir->len = path->len + 1 + account_id->len;
    dir->data = ngx_pnalloc(r->pool, dir->len + 1);
    if (dir->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(dir->data, "%V/%V%Z", path, account_id);

    return NGX_OK;
}


/* expired uploads removed; the bytes of the others counted */

static ngx_int_t
ngx_http_mail_plus_jmap_sweep(ngx_http_request_t *r, ngx_str_t *dir,
    off_t *total)
{
    u_char                              *name;
    time_t                               now;
    ngx_dir_t                            d;
    ngx_str_t                            id;
    ngx_uint_t                           removed;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;
    u_char                               file[NGX_MAX_PATH];

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    *total = 0;
    removed = 0;
    now = ngx_time();

    if (ngx_open_dir(dir, &d) == NGX_ERROR) {
        if (ngx_errno == NGX_ENOENT) {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      ngx_open_dir_n " \"%s\" failed", dir->data);
        return NGX_ERROR;
    }

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&d) == NGX_ERROR) {
            break;
        }

        name = ngx_de_name(&d);
        id.data = name;
        id.len = ngx_de_namelen(&d);

        if (ngx_http_mail_plus_jmap_upload_id(&id) != NGX_OK
            || dir->len + 1 + id.len + 1 > NGX_MAX_PATH)
        {
            continue;
        }

        ngx_sprintf(file, "%V/%V%Z", dir, &id);

        d.valid_info = 0;

        if (ngx_de_info(file, &d) == NGX_FILE_ERROR) {
            continue;
        }

        if (ngx_de_mtime(&d) + jlcf->upload_expire <= now) {
            if (ngx_delete_file(file) == NGX_FILE_ERROR
                && ngx_errno != NGX_ENOENT)
            {
                ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                              ngx_delete_file_n " \"%s\" failed", file);
            }

            removed++;
            continue;
        }

        *total += ngx_de_size(&d);
    }

    (void) ngx_close_dir(&d);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap upload: \"%s\": %ui expired removed, %O "
                   "bytes kept", dir->data, removed, *total);

    return NGX_OK;
}


/* 201 {accountId, blobId, type, size} */

static ngx_int_t
ngx_http_mail_plus_jmap_blob_answer(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, u_char *id, off_t size)
{
    json_t     *json;
    ngx_int_t   rc;
    ngx_str_t   type;

    type.len = 0;

    if (r->headers_in.content_type) {
        type.len = r->headers_in.content_type->value.len;
        type.data = ngx_pnalloc(r->pool, type.len);
        if (type.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(type.data, r->headers_in.content_type->value.data,
                   type.len);

        /* the media type, without its parameters */

        while (type.len && type.data[type.len - 1] == ' ') {
            type.len--;
        }

        if (ngx_strlchr(type.data, type.data + type.len, ';')) {
            type.len = ngx_strlchr(type.data, type.data + type.len, ';')
                       - type.data;
        }
    }

    if (ngx_http_mail_plus_jmap_media_type(&type) != NGX_OK) {
        ngx_str_set(&type, "application/octet-stream");
    }

    json = json_pack("{s:s%, s:s%, s:s%, s:I}",
                     "accountId", (char *) ctx->account_id.data,
                     ctx->account_id.len,
                     "blobId", (char *) id,
                     (size_t) NGX_HTTP_MAIL_PLUS_JMAP_UPLOAD_ID_LEN,
                     "type", (char *) type.data, type.len,
                     "size", (json_int_t) size);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_mail_plus_jmap_send_json(r, NGX_HTTP_CREATED,
                                           "application/json", json);

    json_decref(json);

    return rc;
}


/*
 * "download/{accountId}/{blobId}/{name}": the type from "?type=" if it
 * is a media type, else application/octet-stream
 */

ngx_int_t
ngx_http_mail_plus_jmap_download(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *tail)
{
    u_char     *p, *last, *dst;
    ngx_str_t   account, blob_id, name, type, arg;

    p = tail->data + sizeof("download/") - 1;
    last = tail->data + tail->len;

    account.data = p;
    p = ngx_strlchr(p, last, '/');
    if (p == NULL) {
        return ngx_http_mail_plus_jmap_not_found(r, "no such blob");
    }

    account.len = p - account.data;

    blob_id.data = ++p;
    p = ngx_strlchr(p, last, '/');
    if (p == NULL) {
        return ngx_http_mail_plus_jmap_not_found(r, "no such blob");
    }

    blob_id.len = p - blob_id.data;

    name.data = p + 1;
    name.len = last - name.data;

    if (account.len != ctx->account_id.len
        || ngx_strncmp(account.data, ctx->account_id.data, account.len) != 0)
    {
        return ngx_http_mail_plus_jmap_not_found(r, "no such account");
    }

    if (blob_id.len == 0 || blob_id.len > 128 || name.len > 1024) {
        return ngx_http_mail_plus_jmap_not_found(r, "no such blob");
    }

    /* r->uri is decoded already: the name is as the client meant it */

    ngx_str_set(&type, "application/octet-stream");

    if (ngx_http_arg(r, (u_char *) "type", 4, &arg) == NGX_OK
        && arg.len && arg.len <= 255)
    {
        dst = ngx_pnalloc(r->pool, arg.len);
        if (dst == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = arg.data;
        arg.data = dst;
        ngx_unescape_uri(&dst, &p, arg.len, NGX_UNESCAPE_URI);
        arg.len = dst - arg.data;

        if (ngx_http_mail_plus_jmap_media_type(&arg) == NGX_OK) {
            type = arg;
        }
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    /* the id is the client's, not checked yet: not logged */

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap download: %s blob, an id of %uz bytes, "
                   "type %V", blob_id.data[0] == 'U' ? "an upload's" : "a",
                   blob_id.len, &type);

    if (blob_id.data[0] == 'U') {
        return ngx_http_mail_plus_jmap_download_file(r, &ctx->account_id,
                                                     &blob_id, &type, &name);
    }

    return ngx_http_mail_plus_jmap_download_imap(r, ctx, &blob_id, &type,
                                                 &name);
}


static ngx_int_t
ngx_http_mail_plus_jmap_download_headers(ngx_http_request_t *r,
    ngx_str_t *type, ngx_str_t *name, off_t size)
{
    ngx_str_t  value;

    ngx_str_set(&value, "nosniff");

    if (ngx_http_mail_plus_header(r, "X-Content-Type-Options", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "sandbox");

    if (ngx_http_mail_plus_header(r, "Content-Security-Policy", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "private, immutable, max-age=31536000");

    if (ngx_http_mail_plus_header(r, "Cache-Control", &value) != NGX_OK
        || ngx_http_mail_plus_jmap_disposition(r, name) != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = size;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    return NGX_OK;
}


/* an upload from the store: the file itself */

static ngx_int_t
ngx_http_mail_plus_jmap_download_file(ngx_http_request_t *r,
    ngx_str_t *account_id, ngx_str_t *blob_id, ngx_str_t *type,
    ngx_str_t *name)
{
    off_t                                total;
    ngx_fd_t                             fd;
    ngx_int_t                            rc;
    ngx_str_t                            dir, path;
    ngx_buf_t                           *b;
    ngx_chain_t                          out;
    ngx_file_info_t                      fi;
    ngx_pool_cleanup_t                  *cln;
    ngx_pool_cleanup_file_t             *clnf;

    if (ngx_http_mail_plus_jmap_upload_id(blob_id) != NGX_OK) {
        return ngx_http_mail_plus_jmap_not_found(r, "no such blob");
    }

    if (ngx_http_mail_plus_jmap_account_dir(r, account_id, &dir) != NGX_OK
        || ngx_http_mail_plus_jmap_sweep(r, &dir, &total) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    path.len = dir.len + 1 + blob_id->len;
    path.data = ngx_pnalloc(r->pool, path.len + 1);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(path.data, "%V/%V%Z", &dir, blob_id);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pool_cleanup_file_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        return ngx_http_mail_plus_jmap_not_found(r, "no such blob");
    }

    cln->handler = ngx_pool_cleanup_file;
    clnf = cln->data;
    clnf->fd = fd;
    clnf->name = path.data;
    clnf->log = r->connection->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_mail_plus_jmap_download_headers(r, type, name,
                                                 ngx_file_size(&fi))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = ngx_file_size(&fi);
    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;
    b->file->fd = fd;
    b->file->name = path;
    b->file->log = r->connection->log;

    out.buf = b;
    out.next = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap download: upload of %O bytes sent",
                   ngx_file_size(&fi));

    return ngx_http_output_filter(r, &out);
}


/* a message or a part: over IMAP, once the mailboxes are known */

static ngx_int_t
ngx_http_mail_plus_jmap_download_imap(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *blob_id, ngx_str_t *type,
    ngx_str_t *name)
{
    u_char                               kind;
    ngx_int_t                            rc;
    ngx_http_mail_plus_jmap_download_t  *dl;

    dl = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_jmap_download_t));
    if (dl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kind = ngx_http_mail_plus_jmap_ref(r->pool, blob_id, &dl->ref);

    if (kind != 'B' && kind != 'P') {
        return ngx_http_mail_plus_jmap_not_found(r, "no such blob");
    }

    dl->kind = kind;
    dl->type = *type;
    dl->name = *name;
    dl->call.ctx = ctx;
    dl->call.request = r;
    dl->call.name = "download";
    dl->call.id = "";
    dl->call.data = dl;

    rc = ngx_http_mail_plus_jmap_mailboxes(&dl->call,
                                   ngx_http_mail_plus_jmap_download_mailboxes);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    if (rc == NGX_OK) {
        ngx_http_mail_plus_jmap_download_mailboxes(&dl->call);
    }

    return NGX_DONE;
}


/* the mailbox of the id EXAMINEd */

static void
ngx_http_mail_plus_jmap_download_mailboxes(ngx_http_mail_plus_jmap_call_t *call)
{
    u_char                               id[17];
    ngx_mail_plus_imap_t                *imap;
    ngx_mail_plus_imap_cmd_t            *cmd;
    ngx_http_mail_plus_jmap_mailbox_t   *mb;
    ngx_http_mail_plus_jmap_download_t  *dl;

    dl = call->data;

    if (call->ctx->mailboxes == NULL) {
        ngx_http_mail_plus_jmap_download_end(dl, NGX_HTTP_BAD_GATEWAY);
        return;
    }

    id[0] = 'M';
    ngx_memcpy(id + 1, dl->ref.mailbox, 16);

    mb = ngx_http_mail_plus_jmap_mailbox_find(call->ctx->mailboxes, id);

    if (mb == NULL || mb->noselect || mb->uidvalidity != dl->ref.uidvalidity)
    {
        ngx_http_mail_plus_jmap_download_end(dl, NGX_HTTP_NOT_FOUND);
        return;
    }

    imap = ngx_http_mail_plus_jmap_imap(call->ctx);
    cmd = imap ? ngx_mail_plus_imap_cmd(imap, call->request->pool) : NULL;

    if (cmd == NULL
        || ngx_mail_plus_imap_cmd_text(cmd, "EXAMINE ") != NGX_OK
        || ngx_mail_plus_imap_cmd_mailbox(cmd, &mb->path) != NGX_OK)
    {
        ngx_http_mail_plus_jmap_download_end(dl,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cmd->handler = ngx_http_mail_plus_jmap_download_examined;
    cmd->data = dl;

    if (ngx_mail_plus_imap_send(cmd) != NGX_OK) {
        ngx_http_mail_plus_jmap_download_end(dl,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap download: EXAMINE of %s sent", id);
}


/* UIDVALIDITY checked, then the bytes asked */

static void
ngx_http_mail_plus_jmap_download_examined(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_str_t                            part;
    ngx_http_request_t                  *r;
    ngx_mail_plus_imap_cmd_t            *fetch;
    ngx_http_mail_plus_jmap_download_t  *dl;

    dl = cmd->data;
    r = dl->call.request;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap download: EXAMINE answered, rc %i, status %d, "
                   "uidvalidity %uL", cmd->rc, (int) cmd->status,
                   cmd->imap->uidvalidity);

    if (cmd->rc != NGX_OK || cmd->status != NGX_MAIL_PLUS_IMAP_OK) {
        ngx_http_mail_plus_jmap_download_end(dl, cmd->rc == NGX_OK
                                                 ? NGX_HTTP_NOT_FOUND
                                                 : NGX_HTTP_BAD_GATEWAY);
        return;
    }

    if (cmd->imap->uidvalidity != dl->ref.uidvalidity) {
        ngx_http_mail_plus_jmap_download_end(dl, NGX_HTTP_NOT_FOUND);
        return;
    }

    fetch = ngx_mail_plus_imap_cmd(cmd->imap, r->pool);
    if (fetch == NULL) {
        ngx_http_mail_plus_jmap_download_end(dl,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    fetch->handler = ngx_http_mail_plus_jmap_download_fetched;
    fetch->untagged_handler = ngx_http_mail_plus_jmap_download_data;
    fetch->data = dl;

    if (dl->kind == 'B') {
        ngx_str_set(&part, "BODY.PEEK[]");

    } else {
        part.len = sizeof("BINARY.PEEK[]") - 1 + dl->ref.part.len;
        part.data = ngx_pnalloc(r->pool, part.len);
        if (part.data == NULL) {
            ngx_http_mail_plus_jmap_download_end(dl,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_sprintf(part.data, "BINARY.PEEK[%V]", &dl->ref.part);
    }

    if (ngx_mail_plus_imap_cmd_text(fetch, "UID FETCH %uL (%V)",
                                    dl->ref.uid, &part)
        != NGX_OK
        || ngx_mail_plus_imap_send(fetch) != NGX_OK)
    {
        ngx_http_mail_plus_jmap_download_end(dl,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
}


/* "* n FETCH (UID u BODY[] {len} ...)": the literal taken */

static ngx_int_t
ngx_http_mail_plus_jmap_download_data(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_http_mail_plus_jmap_download_t  *dl;

    dl = cmd->data;

    if (resp->name.len != 5
        || ngx_strncasecmp(resp->name.data, (u_char *) "FETCH", 5) != 0)
    {
        return NGX_DECLINED;
    }

    if (ngx_mail_plus_imap_fetch_body(resp, dl->ref.uid, &dl->body)
        == NGX_OK)
    {
        dl->found = 1;
    }

    return NGX_OK;
}


static void
ngx_http_mail_plus_jmap_download_fetched(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_int_t                            rc;
    ngx_buf_t                           *b;
    ngx_chain_t                          out;
    ngx_http_request_t                  *r;
    ngx_http_mail_plus_jmap_download_t  *dl;

    dl = cmd->data;
    r = dl->call.request;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap download: FETCH answered, rc %i, found %ui, "
                   "%uz bytes", cmd->rc, (ngx_uint_t) dl->found,
                   dl->body.len);

    if (cmd->rc != NGX_OK) {
        ngx_http_mail_plus_jmap_download_end(dl, NGX_HTTP_BAD_GATEWAY);
        return;
    }

    if (cmd->status != NGX_MAIL_PLUS_IMAP_OK || !dl->found) {
        ngx_http_mail_plus_jmap_download_end(dl, NGX_HTTP_NOT_FOUND);
        return;
    }

    if (ngx_http_mail_plus_jmap_download_headers(r, &dl->type, &dl->name,
                                                 dl->body.len)
        != NGX_OK)
    {
        ngx_http_mail_plus_jmap_download_end(dl,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_mail_plus_jmap_download_end(dl, rc);
        return;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_mail_plus_jmap_download_end(dl, NGX_ERROR);
        return;
    }

    b->pos = dl->body.data;
    b->last = dl->body.data + dl->body.len;
    b->memory = dl->body.len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ngx_http_mail_plus_jmap_download_end(dl, ngx_http_output_filter(r, &out));
}


/* the answer: an error's problem, or what the output filter said */

static void
ngx_http_mail_plus_jmap_download_end(ngx_http_mail_plus_jmap_download_t *dl,
    ngx_int_t rc)
{
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_mail_plus_jmap_problem_t   problem;

    r = dl->call.request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http jmap download: done, %i", rc);

    if (rc == NGX_HTTP_NOT_FOUND) {
        rc = ngx_http_mail_plus_jmap_not_found(r, "no such blob");

    } else if (rc == NGX_HTTP_BAD_GATEWAY) {
        problem.type = NGX_HTTP_MAIL_PLUS_JMAP_OK;
        problem.detail = "the mail server is not available";
        problem.limit = NULL;

        rc = ngx_http_mail_plus_jmap_problem(r, NGX_HTTP_BAD_GATEWAY,
                                             &problem);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * Content-Disposition (RFC 6266): attachment; filename="ascii" with any
 * other byte as "_", and filename*=UTF-8''... when the name is not plain
 */

static ngx_int_t
ngx_http_mail_plus_jmap_disposition(ngx_http_request_t *r, ngx_str_t *name)
{
    u_char      *p, *q, ch;
    size_t       i, len;
    ngx_str_t    value;
    ngx_uint_t   plain;

    len = ngx_min(name->len, 255);
    plain = 1;

    value.data = ngx_pnalloc(r->pool, sizeof("attachment; filename=\"\"; "
                                             "filename*=UTF-8''") + 4 * len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(value.data, "attachment; filename=\"",
                   sizeof("attachment; filename=\"") - 1);

    for (i = 0; i < len; i++) {
        ch = name->data[i];

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
            || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
            || ch == '_' || ch == ' ' || ch == '(' || ch == ')'
            || ch == '+' || ch == ',')
        {
            *p++ = ch;

        } else {
            *p++ = '_';
            plain = 0;
        }
    }

    if (len == 0) {
        p = ngx_cpymem(p, "download", sizeof("download") - 1);
    }

    *p++ = '"';

    if (!plain) {

        /* only a name of valid UTF-8 is given again, percent-encoded */

        for (i = 0; i < len; /* void */) {
            q = name->data + i;

            if (*q < 0x80) {
                i++;
                continue;
            }

            if (ngx_utf8_decode(&q, len - i) > 0x10ffff) {
                break;
            }

            i = q - name->data;
        }

        if (i == len) {
            p = ngx_cpymem(p, "; filename*=UTF-8''",
                           sizeof("; filename*=UTF-8''") - 1);

            for (i = 0; i < len; i++) {
                ch = name->data[i];

                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
                    || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'
                    || ch == '_')
                {
                    *p++ = ch;

                } else {
                    p = ngx_sprintf(p, "%%%02XD", (ngx_uint_t) ch);
                }
            }
        }
    }

    value.len = p - value.data;

    return ngx_http_mail_plus_header(r, "Content-Disposition", &value);
}


ngx_int_t
ngx_http_mail_plus_jmap_upload_read(ngx_http_request_t *r,
    ngx_str_t *account_id, ngx_str_t *blob_id, ngx_str_t *bytes)
{
    off_t                                total, size;
    ssize_t                              n;
    ngx_fd_t                             fd;
    ngx_str_t                            dir;
    ngx_file_t                           file;
    ngx_file_info_t                      fi;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    if (ngx_http_mail_plus_jmap_upload_id(blob_id) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_http_mail_plus_jmap_account_dir(r, account_id, &dir) != NGX_OK
        || ngx_http_mail_plus_jmap_sweep(r, &dir, &total) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name.len = dir.len + 1 + blob_id->len;
    file.name.data = ngx_pnalloc(r->pool, file.name.len + 1);
    if (file.name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(file.name.data, "%V/%V%Z", &dir, blob_id);

    fd = ngx_open_file(file.name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return NGX_DECLINED;
    }

    file.fd = fd;
    file.log = r->connection->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);

    if (size > (off_t) jlcf->max_size_upload) {
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    bytes->len = size;
    bytes->data = ngx_pnalloc(r->pool, size + 1);
    if (bytes->data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = size ? ngx_read_file(&file, bytes->data, size, 0) : 0;

    (void) ngx_close_file(fd);

    if (n != (ssize_t) size) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap upload: %V read, %O bytes", blob_id, size);

    return NGX_OK;
}


/* "U" and 64 lower-case hex digits */

static ngx_int_t
ngx_http_mail_plus_jmap_upload_id(ngx_str_t *id)
{
    size_t  i;

    if (id->len != NGX_HTTP_MAIL_PLUS_JMAP_UPLOAD_ID_LEN || id->data[0] != 'U')
    {
        return NGX_ERROR;
    }

    for (i = 1; i < id->len; i++) {
        if (!((id->data[i] >= '0' && id->data[i] <= '9')
              || (id->data[i] >= 'a' && id->data[i] <= 'f')))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mail_plus_jmap_not_found(ngx_http_request_t *r, const char *detail)
{
    ngx_http_mail_plus_jmap_problem_t  problem;

    problem.type = NGX_HTTP_MAIL_PLUS_JMAP_OK;
    problem.detail = detail;
    problem.limit = NULL;

    return ngx_http_mail_plus_jmap_problem(r, NGX_HTTP_NOT_FOUND, &problem);
}
