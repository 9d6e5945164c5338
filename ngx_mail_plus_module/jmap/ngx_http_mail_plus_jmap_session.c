
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * The session resource (RFC 8620, section 2): the core capability with
 * the location's limits, the user's one account, and the URLs, absolute,
 * from the Host the client sent and the location's prefix.  The mail
 * (RFC 8621) and submission capabilities are empty objects among the
 * server's capabilities, and carry their limits in the account's
 * accountCapabilities (RFC 8621, sections 1.3.1 and 1.3.3); the account
 * is the primary one of both.  The state is a hash of what the resource
 * says, the same while it says the same.
 */


static json_t *ngx_http_mail_plus_jmap_core_caps(
    ngx_http_mail_plus_jmap_loc_conf_t *jlcf);
static json_t *ngx_http_mail_plus_jmap_accounts(
    ngx_http_mail_plus_jmap_ctx_t *ctx,
    ngx_http_mail_plus_jmap_loc_conf_t *jlcf);
static json_t *ngx_http_mail_plus_jmap_primary(
    ngx_http_mail_plus_jmap_ctx_t *ctx);
static json_t *ngx_http_mail_plus_jmap_urls(ngx_http_request_t *r);


typedef struct {
    const char  *name;
    const char  *tail;
} ngx_http_mail_plus_jmap_url_t;


static ngx_http_mail_plus_jmap_url_t  ngx_http_mail_plus_jmap_urls_list[] = {
    { "apiUrl", "api" },
    { "downloadUrl", "download/{accountId}/{blobId}/{name}?type={type}" },
    { "uploadUrl", "upload/{accountId}/" },
    { "eventSourceUrl",
      "eventsource/?types={types}&closeafter={closeafter}&ping={ping}" },
    { NULL, NULL }
};


ngx_int_t
ngx_http_mail_plus_jmap_session(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    json_t                              *json, *caps, *urls, *v;
    ngx_int_t                            rc;
    ngx_str_t                            state;
    const char                          *key;
    ngx_http_mail_plus_jmap_problem_t    problem;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    urls = ngx_http_mail_plus_jmap_urls(r);

    if (urls == NULL) {
        problem.type = NGX_HTTP_MAIL_PLUS_JMAP_OK;
        problem.detail = "the Host header is missing or not a host name";
        problem.limit = NULL;

        return ngx_http_mail_plus_jmap_problem(r, NGX_HTTP_BAD_REQUEST,
                                               &problem);
    }

    if (ngx_http_mail_plus_jmap_state(r, ctx, &state) != NGX_OK) {
        json_decref(urls);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    caps = json_pack("{s{}s{}}", NGX_HTTP_MAIL_PLUS_JMAP_MAIL_URN,
                     NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION_URN);
    json = json_pack("{sosososs#so}",
                     "capabilities", caps,
                     "accounts", ngx_http_mail_plus_jmap_accounts(ctx, jlcf),
                     "primaryAccounts", ngx_http_mail_plus_jmap_primary(ctx),
                     "username", (const char *) ctx->username.data,
                     (int) ctx->username.len,
                     "state",
                     json_stringn((const char *) state.data, state.len));

    if (json == NULL
        || json_object_set_new(caps, NGX_HTTP_MAIL_PLUS_JMAP_CORE_URN,
                               ngx_http_mail_plus_jmap_core_caps(jlcf))
           != 0)
    {
        json_decref(json);
        json_decref(urls);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_foreach(urls, key, v) {
        if (json_object_set(json, key, v) != 0) {
            json_decref(json);
            json_decref(urls);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    json_decref(urls);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap: session resource, state %V", &state);

    rc = ngx_http_mail_plus_jmap_send_json(r, NGX_HTTP_OK,
                                           "application/json", json);

    json_decref(json);

    return rc;
}


static json_t *
ngx_http_mail_plus_jmap_core_caps(ngx_http_mail_plus_jmap_loc_conf_t *jlcf)
{
    return json_pack("{sIsIsIsIsIsIsIs[]}",
                     "maxSizeUpload", (json_int_t) jlcf->max_size_upload,
                     "maxConcurrentUpload", (json_int_t) 4,
                     "maxSizeRequest", (json_int_t) jlcf->max_size_request,
                     "maxConcurrentRequests",
                     (json_int_t) jlcf->max_concurrent,
                     "maxCallsInRequest", (json_int_t) jlcf->max_calls,
                     "maxObjectsInGet", (json_int_t) jlcf->max_objects_in_get,
                     "maxObjectsInSet", (json_int_t) jlcf->max_objects_in_set,
                     "collationAlgorithms");
}


/*
 * the user's own account: mail (one mailbox an email, names of up to 490
 * bytes, sorting by receivedAt) and submission (sent at once)
 */

static json_t *
ngx_http_mail_plus_jmap_accounts(ngx_http_mail_plus_jmap_ctx_t *ctx,
    ngx_http_mail_plus_jmap_loc_conf_t *jlcf)
{
    json_t  *accounts, *account;

    account = json_pack("{ss#sbsbs{s{sIsnsIsIs[s]sb}s{sIs{}}}}",
                        "name", (const char *) ctx->username.data,
                        (int) ctx->username.len,
                        "isPersonal", 1, "isReadOnly", 0,
                        "accountCapabilities",
                        NGX_HTTP_MAIL_PLUS_JMAP_MAIL_URN,
                        "maxMailboxesPerEmail", (json_int_t) 1,
                        "maxMailboxDepth",
                        "maxSizeMailboxName", (json_int_t) 490,
                        "maxSizeAttachmentsPerEmail",
                        (json_int_t) jlcf->max_size_upload,
                        "emailQuerySortOptions", "receivedAt",
                        "mayCreateTopLevelMailbox", 1,
                        NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION_URN,
                        "maxDelayedSend", (json_int_t) 0,
                        "submissionExtensions");
    if (account == NULL) {
        return NULL;
    }

    accounts = json_object();

    if (accounts == NULL
        || json_object_setn_new(accounts,
                                (const char *) ctx->account_id.data,
                                ctx->account_id.len, account)
           != 0)
    {
        json_decref(accounts);
        return NULL;
    }

    return accounts;
}


/* the account is the primary one of mail and submission */

static json_t *
ngx_http_mail_plus_jmap_primary(ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    return json_pack("{ss#ss#}", NGX_HTTP_MAIL_PLUS_JMAP_MAIL_URN,
                     (const char *) ctx->account_id.data,
                     (int) ctx->account_id.len,
                     NGX_HTTP_MAIL_PLUS_JMAP_SUBMISSION_URN,
                     (const char *) ctx->account_id.data,
                     (int) ctx->account_id.len);
}


/* the URLs; NULL if the Host header is not usable */

static json_t *
ngx_http_mail_plus_jmap_urls(ngx_http_request_t *r)
{
    json_t                         *urls;
    ngx_str_t                       url;
    ngx_http_mail_plus_jmap_url_t  *u;

    urls = json_object();
    if (urls == NULL) {
        return NULL;
    }

    for (u = ngx_http_mail_plus_jmap_urls_list; u->name; u++) {

        if (ngx_http_mail_plus_jmap_url(r, u->tail, &url) != NGX_OK
            || json_object_set_new(urls, u->name,
                                   json_stringn((const char *) url.data,
                                                url.len))
               != 0)
        {
            json_decref(urls);
            return NULL;
        }
    }

    return urls;
}


/* "s" and a CRC32 of the limits and the user: stable while they are */

ngx_int_t
ngx_http_mail_plus_jmap_state(ngx_http_request_t *r,
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_str_t *state)
{
    u_char                               buf[NGX_INT_T_LEN * 6 + 8], *p;
    uint32_t                             crc;
    ngx_http_mail_plus_jmap_loc_conf_t  *jlcf;

    jlcf = ngx_http_get_module_loc_conf(r, ngx_http_mail_plus_jmap_module);

    p = ngx_snprintf(buf, sizeof(buf), "%uz %ui %ui %ui %uz %ui",
                     jlcf->max_size_request, jlcf->max_calls,
                     jlcf->max_objects_in_get, jlcf->max_objects_in_set,
                     jlcf->max_size_upload, jlcf->max_concurrent);

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, buf, p - buf);
    ngx_crc32_update(&crc, ctx->account_id.data, ctx->account_id.len);
    ngx_crc32_final(crc);

    state->data = ngx_pnalloc(r->pool, 9);
    if (state->data == NULL) {
        return NGX_ERROR;
    }

    state->len = ngx_sprintf(state->data, "s%08xD", crc) - state->data;

    return NGX_OK;
}
