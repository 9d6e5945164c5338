
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_PROXY_H_INCLUDED_
#define _NGX_MAIL_PLUS_PROXY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include <ngx_mail_pop3_module.h>
#include <ngx_mail_imap_module.h>
#include "ngx_mail_plus.h"


/*
 * POP3 and IMAP sessions handled by the module itself: the dialogue before
 * login (ngx_mail_plus_pop3_handler.c, ngx_mail_plus_imap_handler.c), the
 * router's answer and the session's life (ngx_mail_plus_proxy_module.c),
 * the backend connection and login (ngx_mail_plus_upstream.c), the relay
 * after login (ngx_mail_plus_relay.c), and the session limits
 * (ngx_mail_plus_limit.c).
 */


typedef struct {
    ngx_flag_t                  enable;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  login_timeout;
    ngx_msec_t                  timeout;
    size_t                      buffer_size;
    ngx_uint_t                  user_sessions;
    ngx_uint_t                  client_sessions;
} ngx_mail_plus_proxy_conf_t;


/* how a session ended, for its log line */

#define NGX_MAIL_PLUS_END_CLIENT      0   /* the client closed */
#define NGX_MAIL_PLUS_END_BACKEND     1   /* the backend closed */
#define NGX_MAIL_PLUS_END_TIMEOUT     2
#define NGX_MAIL_PLUS_END_ERROR       3
#define NGX_MAIL_PLUS_END_LIMIT       4
#define NGX_MAIL_PLUS_END_QUIT        5   /* QUIT or LOGOUT before login */


/* one direction of the relay; the buffer's memory only while it has data */

typedef struct {
    ngx_buf_t                   buf;
    off_t                       bytes;
#if (NGX_LINUX)
    ngx_fd_t                    fds[2];       /* splice(2) pipe, if open */
    size_t                      piped;        /* bytes in it */
    size_t                      size;         /* of the pipe */
    size_t                      burst;        /* spliced since idle */
#endif
    unsigned                    eof:1;
    unsigned                    shut:1;
    unsigned                    spliced:1;    /* fds are open */
    unsigned                    bulk:1;       /* splice this burst */
} ngx_mail_plus_pipe_t;


typedef struct {
    ngx_mail_session_t         *session;
    ngx_mail_plus_proxy_conf_t *conf;
    ngx_uint_t                  protocol;     /* NGX_MAIL_PLUS_IMAP, POP3 */

    ngx_mail_plus_check_t      *check;        /* while logging in */
    ngx_event_t                 delay;        /* auth_delay after a failure */

    ngx_peer_connection_t       peer;
    ngx_buf_t                  *line;         /* backend lines, login only */
    ngx_str_t                   send;         /* to the backend, login only */
    ngx_str_t                   next;         /* commands after the reply */
    ngx_uint_t                  state;        /* of the backend login */
    ngx_uint_t                  replies;      /* backend replies expected */
    ngx_uint_t                  arg;          /* IMAP: its literal waits */
    ngx_str_t                   reply;        /* to the client after login */

    ngx_mail_plus_pipe_t        up;           /* client to backend */
    ngx_mail_plus_pipe_t        down;         /* backend to client */

    ngx_str_t                   user;         /* as the client logged in */
    ngx_str_t                   user_key;     /* of the session limits */
    ngx_str_t                   client_key;
    ngx_str_t                   backend;      /* address:port, for logs */
    u_char                      backend_text[NGX_SOCKADDR_STRLEN];

    ngx_msec_t                  start;
    ngx_uint_t                  end;          /* NGX_MAIL_PLUS_END_* */

    unsigned                    splice:1;     /* no TLS: splice(2) */
    unsigned                    user_limited:1;
    unsigned                    client_limited:1;
    unsigned                    logged_in:1;
    unsigned                    sasl_ir:1;
    unsigned                    auth_plain:1;
    unsigned                    login_disabled:1;
    unsigned                    literal_plus:1;
    unsigned                    xclient:1;    /* POP3: the backend offers it */
    unsigned                    quickack:1;   /* ID and LOGIN pipelined */
} ngx_mail_plus_proxy_ctx_t;


/* a protocol's SASL exchange: its states and its refusal */

typedef struct {
    ngx_uint_t                  login_username;   /* s->mail_state values */
    ngx_uint_t                  login_password;
    ngx_uint_t                  plain;
    ngx_uint_t                  cram_md5;
    ngx_str_t                   unsupported;
} ngx_mail_plus_sasl_t;


extern ngx_module_t  ngx_mail_plus_proxy_module;


/* ngx_mail_plus_proxy_module.c: the session around the dialogues */

void ngx_mail_plus_proxy_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t protocol, ngx_str_t *greeting,
    ngx_str_t *refusal, ngx_event_handler_pt init_protocol);
ngx_int_t ngx_mail_plus_proxy_init_protocol(ngx_event_t *rev, size_t size);
ngx_int_t ngx_mail_plus_proxy_read_command(ngx_event_t *rev);
ngx_str_t *ngx_mail_plus_proxy_capability(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *plain, ngx_str_t *starttls,
    ngx_str_t *starttls_only);
ngx_int_t ngx_mail_plus_proxy_starttls(ngx_mail_session_t *s,
    ngx_connection_t *c);
ngx_int_t ngx_mail_plus_proxy_sasl_start(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_sasl_t *sasl);
ngx_int_t ngx_mail_plus_proxy_sasl_step(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_sasl_t *sasl);
void ngx_mail_plus_proxy_login(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_mail_plus_proxy_reply(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_uint_t tagged);
void ngx_mail_plus_proxy_finalize(ngx_mail_session_t *s, ngx_uint_t end);

/* the dialogues before login */

void ngx_mail_plus_pop3_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c);
void ngx_mail_plus_pop3_init_protocol(ngx_event_t *rev);
void ngx_mail_plus_pop3_auth_state(ngx_event_t *rev);
void ngx_mail_plus_imap_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c);
void ngx_mail_plus_imap_init_protocol(ngx_event_t *rev);
void ngx_mail_plus_imap_auth_state(ngx_event_t *rev);

/* ngx_mail_plus_upstream.c: backend connection and login */

void ngx_mail_plus_upstream_connect(ngx_mail_session_t *s);
void ngx_mail_plus_upstream_close(ngx_mail_plus_proxy_ctx_t *ctx);

/* ngx_mail_plus_relay.c */

void ngx_mail_plus_relay_start(ngx_mail_session_t *s);
void ngx_mail_plus_relay_close(ngx_mail_plus_proxy_ctx_t *ctx);



#endif /* _NGX_MAIL_PLUS_PROXY_H_INCLUDED_ */
