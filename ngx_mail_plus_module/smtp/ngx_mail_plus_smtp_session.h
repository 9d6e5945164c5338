
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_SMTP_SESSION_H_INCLUDED_
#define _NGX_MAIL_PLUS_SMTP_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"


/*
 * What only the files of smtp/ share, no other part: the session's entry
 * points, which the module's protocol table names
 * (ngx_mail_plus_smtp_module.c), and the recipient probe the session runs
 * (ngx_mail_plus_smtp_verify.c).
 */


/* the session (ngx_mail_plus_smtp_handler.c) */

void ngx_mail_plus_smtp_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c);
void ngx_mail_plus_smtp_init_protocol(ngx_event_t *rev);
void ngx_mail_plus_smtp_auth_state(ngx_event_t *rev);


/*
 * the recipient probe (ngx_mail_plus_smtp_verify.c): asks a mailbox
 * server whether a local recipient exists; NGX_OK or NGX_DECLINED from
 * its cache, NGX_AGAIN (the handler is called with the answer), or
 * NGX_ERROR
 */

typedef struct ngx_mail_plus_verify_s  ngx_mail_plus_verify_t;

typedef void (*ngx_mail_plus_verify_handler_pt)(void *data, ngx_int_t rc);

ngx_int_t ngx_mail_plus_verify(ngx_mail_plus_verify_conf_t *vc,
    ngx_mail_plus_route_t *route, ngx_str_t *helo,
    ngx_mail_plus_verify_handler_pt handler, void *data, ngx_log_t *log,
    ngx_mail_plus_verify_t **vp);
void ngx_mail_plus_verify_cancel(ngx_mail_plus_verify_t *v);


#endif /* _NGX_MAIL_PLUS_SMTP_SESSION_H_INCLUDED_ */
