
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"
#include "ngx_http_mail_plus_jmap_email.h"


/*
 * The next page of a listing, read ahead.  A client listing a mailbox
 * page by page (Email/query with a position and a limit, then Email/get
 * of the ids) waits for an answer, reads it, and only then asks for the
 * next page: meanwhile the backend has nothing to do.  So when an
 * Email/get is answered with the objects of a run of the mailbox's kept
 * SORT (ngx_http_mail_plus_jmap_query.c), the answer is sent first, and
 * then the run that follows it is fetched by an Email/get of the
 * module's own, with the same arguments.  The request is finalized when
 * that ends: the connection's next request waits for it, not for a
 * second session to the backend.
 *
 * Its objects are kept with the backend session, in place of the last
 * (at most "mail_plus_jmap_read_ahead" bytes), under the mailbox's
 * UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and count as this request's list
 * found them.  With CONDSTORE a new, expunged or changed message raises
 * HIGHESTMODSEQ, so a later list that finds the same four proves the
 * objects are still what the backend would give (without it nothing is
 * read ahead).  An Email/get asking for exactly those messages with the
 * same arguments takes them; any other asks the backend as ever.
 */


typedef struct {
    ngx_http_mail_plus_jmap_mbstate_t   mailbox;
    size_t                              args_len;
    ngx_uint_t                          nuids;
    ngx_uint_t                          items;
    size_t                              text_len;
    /* then the arguments' text, the UIDs (ascending), the objects */
} ngx_http_mail_plus_jmap_page_t;


typedef struct {
    ngx_http_mail_plus_jmap_page_t      key;
    ngx_str_t                           args;       /* their text */
    json_t                             *call_args;  /* the read's, until
                                                       it starts */
    uint32_t                           *uids;       /* ascending */
} ngx_http_mail_plus_jmap_ahead_t;


static ngx_int_t ngx_http_mail_plus_jmap_ahead_key(ngx_pool_t *pool,
    json_t *args, json_t **own, ngx_str_t *text);
static int ngx_libc_cdecl ngx_http_mail_plus_jmap_uid_cmp(const void *one,
    const void *two);
static void ngx_http_mail_plus_jmap_ahead_cleanup(void *data);
static void ngx_http_mail_plus_jmap_ahead_done(
    ngx_http_mail_plus_jmap_call_t *call);
static void ngx_http_mail_plus_jmap_ahead_keep(
    ngx_http_mail_plus_jmap_ctx_t *ctx, ngx_http_mail_plus_jmap_ahead_t *a,
    ngx_http_mail_plus_jmap_text_t *list);


/* the Email/get arguments that make its objects what they are */

static const char  *ngx_http_mail_plus_jmap_ahead_args[] = {
    "properties", "bodyProperties", "fetchTextBodyValues",
    "fetchHTMLBodyValues", "fetchAllBodyValues", "maxBodyValueBytes", NULL
};


void
ngx_http_mail_plus_jmap_ahead_plan(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_mailbox_t *mb, uint32_t *uids, ngx_uint_t n)
{
    json_t                              *ids, *own;
    uint32_t                            *next;
    ngx_str_t                            id;
    ngx_uint_t                           i, nnext;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_mail_plus_jmap_ref_t        ref;
    ngx_http_mail_plus_jmap_ctx_t       *ctx;
    ngx_http_mail_plus_jmap_ahead_t     *a;
    ngx_http_mail_plus_jmap_loc_conf_t  *lc;

    ctx = call->ctx;
    lc = ngx_http_get_module_loc_conf(call->request,
                                      ngx_http_mail_plus_jmap_module);

    /* nothing to read ahead for a session that is not kept */

    if (lc->read_ahead == 0 || lc->imap.keepalive == 0 || call->finish
        || ctx->ahead || ctx->imap == NULL
        || json_object_get(call->args, "accountId") == NULL)
    {
        return;
    }

    next = ngx_palloc(call->request->pool, n * sizeof(uint32_t));
    if (next == NULL) {
        return;
    }

    if (ngx_http_mail_plus_jmap_sorted_next(ctx->imap, mb, uids, n, next,
                                            &nnext)
        != NGX_OK)
    {
        return;
    }

    a = ngx_pcalloc(call->request->pool,
                    sizeof(ngx_http_mail_plus_jmap_ahead_t));
    cln = ngx_pool_cleanup_add(call->request->pool, 0);

    if (a == NULL || cln == NULL
        || ngx_http_mail_plus_jmap_ahead_key(call->request->pool, call->args,
                                             &own, &a->args)
           != NGX_OK)
    {
        return;
    }

    cln->handler = ngx_http_mail_plus_jmap_ahead_cleanup;
    cln->data = a;
    a->call_args = own;

    ids = json_array();

    if (ids == NULL
        || json_object_set(own, "accountId",
                           json_object_get(call->args, "accountId"))
           != 0
        || json_object_set_new(own, "ids", ids) != 0)
    {
        return;
    }

    ngx_memcpy(ref.mailbox, mb->id + 1, 16);
    ref.uidvalidity = mb->uidvalidity;
    ngx_str_null(&ref.part);

    for (i = 0; i < nnext; i++) {
        ref.uid = next[i];

        if (ngx_http_mail_plus_jmap_ref_id(call->request->pool, 'E', &ref,
                                           &id)
            != NGX_OK
            || json_array_append_new(ids, json_stringn((char *) id.data,
                                                       id.len))
               != 0)
        {
            return;
        }
    }

    ngx_qsort(next, nnext, sizeof(uint32_t), ngx_http_mail_plus_jmap_uid_cmp);

    ngx_http_mail_plus_jmap_mbstate_set(&a->key.mailbox, mb);
    a->key.args_len = a->args.len;
    a->key.nuids = nnext;
    a->uids = next;

    ctx->ahead = a;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap ahead: %ui messages of \"%*s\" to read ahead",
                   nnext, (size_t) 17, mb->id);
}


/* the answer is sent: the read-ahead starts (NGX_AGAIN), or not */

ngx_int_t
ngx_http_mail_plus_jmap_ahead_start(ngx_http_mail_plus_jmap_ctx_t *ctx)
{
    ngx_int_t                         rc;
    ngx_http_request_t               *r;
    ngx_http_mail_plus_jmap_call_t   *call;
    ngx_http_mail_plus_jmap_ahead_t  *a;

    a = ctx->ahead;
    r = ctx->request;

    /*
     * only once every byte of the answer went (else the writer must run,
     * and the client is not reading yet), and on a connection kept alive:
     * its next request waits for the read-ahead and then finds the
     * session free; one on another connection (or stream) would find it
     * busy and take another
     */

    if (a == NULL || a->call_args == NULL || !r->keepalive
        || r->connection->buffered || r->out)
    {
        ctx->ahead = NULL;
        return NGX_DECLINED;
    }

    call = ngx_pcalloc(r->pool, sizeof(ngx_http_mail_plus_jmap_call_t));
    if (call == NULL) {
        ctx->ahead = NULL;
        return NGX_DECLINED;
    }

    call->ctx = ctx;
    call->request = r;
    call->name = "Email/get";
    call->id = "ahead";
    call->index = json_array_size(ctx->req.calls);     /* none after it */
    call->args = a->call_args;
    call->finish = ngx_http_mail_plus_jmap_ahead_done;

    a->call_args = NULL;                /* the call's now, started once */

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap ahead: started");

    rc = ngx_http_mail_plus_jmap_email_get(call);

    if (rc == NGX_AGAIN) {
        ctx->call = call;
        return NGX_AGAIN;
    }

    /* answered at once (an error, or nothing to fetch): nothing kept */

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "http jmap ahead: answered at once: %i", rc);

    if (call->result) {
        json_decref(call->result);
    }

    json_decref(call->args);
    ctx->ahead = NULL;

    return NGX_DECLINED;
}


/* the read-ahead's Email/get ended: its objects kept, the request ends */

static void
ngx_http_mail_plus_jmap_ahead_done(ngx_http_mail_plus_jmap_call_t *call)
{
    ngx_connection_t                 *c;
    ngx_http_request_t               *r;
    ngx_http_mail_plus_jmap_ctx_t    *ctx;
    ngx_http_mail_plus_jmap_ahead_t  *a;

    ctx = call->ctx;
    r = ctx->request;
    c = r->connection;
    a = ctx->ahead;

    ngx_http_set_log_request(c->log, r);

    ctx->call = NULL;
    call->cancel = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "http jmap ahead: done: %s, %ui objects",
                   call->error ? call->error : "ok",
                   call->list ? call->list->items : 0);

    if (a && call->error == NULL && call->result && call->list
        && json_array_size(json_object_get(call->result, "notFound")) == 0
        && call->list->items == a->key.nuids)
    {
        ngx_http_mail_plus_jmap_ahead_keep(ctx, a, call->list);
    }

    if (call->result) {
        json_decref(call->result);
        call->result = NULL;
    }

    if (call->args) {
        json_decref(call->args);
        call->args = NULL;
    }

    ctx->ahead = NULL;

    ngx_http_finalize_request(r, NGX_OK);
    ngx_http_run_posted_requests(c);
}


/* one block: the key, the arguments' text, the UIDs, the objects */

static void
ngx_http_mail_plus_jmap_ahead_keep(ngx_http_mail_plus_jmap_ctx_t *ctx,
    ngx_http_mail_plus_jmap_ahead_t *a, ngx_http_mail_plus_jmap_text_t *list)
{
    u_char                              *p;
    size_t                               size;
    ngx_chain_t                         *cl;
    ngx_mail_plus_imap_t                *imap;
    ngx_http_mail_plus_jmap_page_t      *k;
    ngx_http_mail_plus_jmap_loc_conf_t  *lc;

    imap = ctx->imap;
    lc = ngx_http_get_module_loc_conf(ctx->request,
                                      ngx_http_mail_plus_jmap_module);

    if (imap == NULL) {
        return;
    }

    if (imap->ahead) {
        ngx_free(imap->ahead);
        imap->ahead = NULL;
    }

    size = sizeof(ngx_http_mail_plus_jmap_page_t) + a->args.len
           + sizeof(uint32_t) + a->key.nuids * sizeof(uint32_t) + list->len;

    if (size > lc->read_ahead) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                       "http jmap ahead: %uz bytes, too many to keep", size);
        return;
    }

    k = ngx_alloc(size, ctx->request->connection->log);
    if (k == NULL) {
        return;
    }

    *k = a->key;
    k->items = list->items;
    k->text_len = list->len;

    p = ngx_cpymem((u_char *) (k + 1), a->args.data, a->args.len);
    p = ngx_align_ptr(p, sizeof(uint32_t));
    p = ngx_cpymem(p, a->uids, a->key.nuids * sizeof(uint32_t));

    for (cl = list->out; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    imap->ahead = k;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "http jmap ahead: %ui objects kept, %uz bytes",
                   k->items, size);
}


/* the objects of a page read ahead, if these are its messages: NGX_OK */

ngx_int_t
ngx_http_mail_plus_jmap_ahead_take(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_mailbox_t *mb, uint32_t *uids, ngx_uint_t n,
    ngx_http_mail_plus_jmap_text_t *text)
{
    u_char                              *p;
    ngx_str_t                            args;
    ngx_mail_plus_imap_t                *imap;
    ngx_http_mail_plus_jmap_page_t      *k;
    ngx_http_mail_plus_jmap_loc_conf_t  *lc;

    imap = call->ctx->imap;
    lc = ngx_http_get_module_loc_conf(call->request,
                                      ngx_http_mail_plus_jmap_module);

    if (imap == NULL || imap->ahead == NULL || lc->read_ahead == 0) {
        return NGX_DECLINED;
    }

    k = imap->ahead;

    if (k->nuids != n
        || !ngx_http_mail_plus_jmap_mbstate_same(&k->mailbox, mb))
    {
        return NGX_DECLINED;
    }

    p = (u_char *) (k + 1);

    if (ngx_memcmp(ngx_align_ptr(p + k->args_len, sizeof(uint32_t)), uids,
                   n * sizeof(uint32_t))
        != 0)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_mail_plus_jmap_ahead_key(call->request->pool, call->args,
                                          NULL, &args)
        != NGX_OK
        || args.len != k->args_len || ngx_memcmp(args.data, p, args.len) != 0)
    {
        return NGX_DECLINED;
    }

    p = (u_char *) ngx_align_ptr(p + k->args_len, sizeof(uint32_t))
        + n * sizeof(uint32_t);

    if (ngx_http_mail_plus_jmap_text_raw(text, (char *) p, k->text_len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    text->items += k->items;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->request->connection->log, 0,
                   "http jmap ahead: %ui objects taken, %uz bytes",
                   k->items, k->text_len);

    return NGX_OK;
}


/* the arguments that count, as one object (own, if asked) and its text */

static ngx_int_t
ngx_http_mail_plus_jmap_ahead_key(ngx_pool_t *pool, json_t *args,
    json_t **own, ngx_str_t *text)
{
    char        *dump;
    json_t      *o, *v;
    ngx_uint_t   i;

    o = json_object();
    if (o == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; ngx_http_mail_plus_jmap_ahead_args[i]; i++) {
        v = json_object_get(args, ngx_http_mail_plus_jmap_ahead_args[i]);

        if (v && json_object_set(o, ngx_http_mail_plus_jmap_ahead_args[i], v)
                 != 0)
        {
            json_decref(o);
            return NGX_ERROR;
        }
    }

    dump = json_dumps(o, JSON_COMPACT|JSON_SORT_KEYS);
    if (dump == NULL) {
        json_decref(o);
        return NGX_ERROR;
    }

    text->len = ngx_strlen(dump);
    text->data = ngx_pnalloc(pool, text->len);

    if (text->data) {
        ngx_memcpy(text->data, dump, text->len);
    }

    free(dump);

    if (text->data == NULL) {
        json_decref(o);
        return NGX_ERROR;
    }

    if (own) {
        *own = o;

    } else {
        json_decref(o);
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_mail_plus_jmap_uid_cmp(const void *one, const void *two)
{
    const uint32_t  *a = one, *b = two;

    return (*a > *b) - (*a < *b);
}


/* a read-ahead planned but not started: its arguments go */

static void
ngx_http_mail_plus_jmap_ahead_cleanup(void *data)
{
    ngx_http_mail_plus_jmap_ahead_t  *a = data;

    if (a->call_args) {
        json_decref(a->call_args);
        a->call_args = NULL;
    }
}
