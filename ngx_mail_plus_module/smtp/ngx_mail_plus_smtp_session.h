
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
 * (ngx_mail_plus_smtp_module.c); the session's context and the helpers
 * that its commands, in the files of their own, call back
 * (ngx_mail_plus_smtp_handler.c); those commands, which the session
 * dispatches to; and the recipient probe the session runs
 * (ngx_mail_plus_smtp_verify.c).
 */


typedef struct ngx_mail_plus_verify_s  ngx_mail_plus_verify_t;


#define NGX_MAIL_PLUS_SMTP_MAX_HELO     255


/* the session: its state and its context, of the connection's pool */

typedef enum {
    ngx_mail_plus_st_command = 0,
    ngx_mail_plus_st_auth_plain,
    ngx_mail_plus_st_auth_login_username,
    ngx_mail_plus_st_auth_login_password,
    ngx_mail_plus_st_auth_oauthbearer,
    ngx_mail_plus_st_auth_xoauth2,
    ngx_mail_plus_st_auth_token_error,
    ngx_mail_plus_st_auth_check,
    ngx_mail_plus_st_auth_delay,
    ngx_mail_plus_st_rcpt_verify,
    ngx_mail_plus_st_data,
    ngx_mail_plus_st_bdat,
    ngx_mail_plus_st_commit,
    ngx_mail_plus_st_starttls
} ngx_mail_plus_smtp_state_e;


typedef struct {
    ngx_mail_plus_smtp_state_e   state;
    ngx_buf_t                   *out;
    ngx_uint_t                   errors;
    ngx_uint_t                   junk;        /* since the last message */
    ngx_uint_t                   queued;      /* messages */
    ngx_connection_t            *connection;
    ngx_uint_t                   skip;        /* of the line reader */

    u_char                       helo[NGX_MAIL_PLUS_SMTP_MAX_HELO];
    size_t                       helo_len;
    ngx_str_t                    login;

    ngx_mail_plus_check_t       *check;
    ngx_str_t                    auth_reply;  /* after the delay */
    ngx_uint_t                   token_mech;  /* a token login's SASL
                                                 mechanism */

    ngx_mail_plus_check_t       *rcheck;      /* a recipient's directories */
    ngx_mail_plus_verify_t      *verify;      /* a recipient probe */
    ngx_pool_t                  *vpool;       /*   what RCPT waits with */
    ngx_mail_plus_smtp_path_t    vpath;

    ngx_msec_t                   since;       /* the last reply sent */
    off_t                        received;    /* since the 354 or BDAT */

    ngx_str_t                    client_key;  /* of the session limit */
    u_char                       client_buf[2 + NGX_MAIL_PLUS_CLIENT_KEY_LEN];

    /* the transaction */

    ngx_pool_t                  *tx;
    ngx_str_t                    from;
    ngx_array_t                 *rcpts;       /* ngx_str_t */
    ngx_array_t                 *dsn;         /* ngx_str_t, of each rcpt */
    ngx_str_t                    ret;         /* RFC 3461 */
    ngx_str_t                    envid;
    ngx_uint_t                   body;
    ngx_uint_t                   rcpt_tries;
    ngx_mail_plus_queue_msg_t   *msg;
    ngx_mail_plus_smtp_data_t    data;
    u_char                      *wbuf;
    u_char                      *wpos;
    u_char                      *wend;
    off_t                        bdat_left;
    ngx_str_t                    bdat_reply;  /* of a discarded chunk */

    unsigned                     esmtp:1;
    unsigned                     authenticated:1;
    unsigned                     trusted:1;
    unsigned                     in_tx:1;
    unsigned                     smtputf8:1;
    unsigned                     bdat_used:1;
    unsigned                     bdat_last:1;
    unsigned                     discard:1;
    unsigned                     oversize:1;
    unsigned                     spool_error:1;
    unsigned                     quit:1;
    unsigned                     client_limited:1;
    unsigned                     token_refused:1;  /* auth_reply is RFC
                                                      7628's challenge */
} ngx_mail_plus_smtp_ctx_t;


/* the session (ngx_mail_plus_smtp_handler.c) */

void ngx_mail_plus_smtp_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c);
void ngx_mail_plus_smtp_init_protocol(ngx_event_t *rev);
void ngx_mail_plus_smtp_auth_state(ngx_event_t *rev);


/* what the commands call back (ngx_mail_plus_smtp_handler.c) */

void ngx_mail_plus_smtp_run(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_mail_plus_smtp_set_state(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_state_e state);
void ngx_mail_plus_smtp_reply(ngx_mail_plus_smtp_ctx_t *ctx, char *text);
void ngx_mail_plus_smtp_error(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx, char *text);
void ngx_mail_plus_smtp_reset(ngx_mail_plus_smtp_ctx_t *ctx);


/* the envelope: MAIL and RCPT (ngx_mail_plus_smtp_envelope.c) */

void ngx_mail_plus_smtp_mail(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
void ngx_mail_plus_smtp_rcpt(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);


/*
 * the message: DATA and BDAT, and the content read in their states
 * (ngx_mail_plus_smtp_data.c); content() returns NGX_AGAIN when it needs
 * more input
 */

void ngx_mail_plus_smtp_data(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
void ngx_mail_plus_smtp_bdat(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
ngx_int_t ngx_mail_plus_smtp_content(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);


/*
 * AUTH, and the lines of its dialogue read in the auth states
 * (ngx_mail_plus_smtp_auth.c)
 */

void ngx_mail_plus_smtp_auth(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg);
void ngx_mail_plus_smtp_auth_delayed(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx);
void ngx_mail_plus_smtp_auth_line(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line);


/*
 * the recipient probe (ngx_mail_plus_smtp_verify.c): asks a mailbox
 * server whether a local recipient exists; NGX_OK or NGX_DECLINED from
 * its cache, NGX_AGAIN (the handler is called with the answer), or
 * NGX_ERROR
 */

typedef void (*ngx_mail_plus_verify_handler_pt)(void *data, ngx_int_t rc);

ngx_int_t ngx_mail_plus_verify(ngx_mail_plus_verify_conf_t *vc,
    ngx_mail_plus_route_t *route, ngx_str_t *helo,
    ngx_mail_plus_verify_handler_pt handler, void *data, ngx_log_t *log,
    ngx_mail_plus_verify_t **vp);
void ngx_mail_plus_verify_cancel(ngx_mail_plus_verify_t *v);


#endif /* _NGX_MAIL_PLUS_SMTP_SESSION_H_INCLUDED_ */
