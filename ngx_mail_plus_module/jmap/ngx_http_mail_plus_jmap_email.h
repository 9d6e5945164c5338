
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_HTTP_MAIL_PLUS_JMAP_EMAIL_H_INCLUDED_
#define _NGX_HTTP_MAIL_PLUS_JMAP_EMAIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * What the read side of Email shares: Email/get and Thread/get
 * (ngx_http_mail_plus_jmap_email.c), Email/query
 * (ngx_http_mail_plus_jmap_query.c).
 */


/* a JMAP keyword ("$seen", "work"): NGX_OK if valid (RFC 8621 4.1.1) */
ngx_int_t ngx_http_mail_plus_jmap_keyword(const char *k);

ngx_int_t ngx_http_mail_plus_jmap_email_query(
    ngx_http_mail_plus_jmap_call_t *call);
ngx_int_t ngx_http_mail_plus_jmap_email_get(
    ngx_http_mail_plus_jmap_call_t *call);

/*
 * the kept SORT's page after the n UIDs given, in the order they run in
 * it (up or down): NGX_OK with *nnext (at most n) UIDs in next, or
 * NGX_DECLINED (no SORT of that mailbox as it is now kept, the UIDs not
 * one run of it, nothing after them)
 */
ngx_int_t ngx_http_mail_plus_jmap_sorted_next(ngx_mail_plus_imap_t *imap,
    ngx_http_mail_plus_jmap_mailbox_t *mb, uint32_t *uids, ngx_uint_t n,
    uint32_t *next, ngx_uint_t *nnext);

/*
 * the read-ahead of a listing's next page (ngx_http_mail_plus_jmap_ahead.c):
 * an Email/get answered with the objects of uids (its ids' order) in mb
 * plans the next page; the request starts it once its answer is sent
 * (NGX_AGAIN: the request is finalized when it ends, else not started);
 * an Email/get of exactly the page's messages (sorted uids) with the same
 * arguments, the mailbox unchanged, takes its objects into text
 */
void ngx_http_mail_plus_jmap_ahead_plan(ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_mailbox_t *mb, uint32_t *uids, ngx_uint_t n);
ngx_int_t ngx_http_mail_plus_jmap_ahead_start(
    ngx_http_mail_plus_jmap_ctx_t *ctx);
ngx_int_t ngx_http_mail_plus_jmap_ahead_take(
    ngx_http_mail_plus_jmap_call_t *call,
    ngx_http_mail_plus_jmap_mailbox_t *mb, uint32_t *uids, ngx_uint_t n,
    ngx_http_mail_plus_jmap_text_t *text);


#endif /* _NGX_HTTP_MAIL_PLUS_JMAP_EMAIL_H_INCLUDED_ */
