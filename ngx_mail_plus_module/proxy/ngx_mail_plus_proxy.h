
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
 * login (ngx_mail_plus_pop3_handler.c, ngx_mail_plus_imap_handler.c, their
 * reader ngx_mail_plus_proxy_parse.c and the router's SASL decoding), the
 * router's answer, the session limits and the session's life
 * (ngx_mail_plus_proxy_module.c), the backend connection and login
 * (ngx_mail_plus_upstream.c), the relay after login (ngx_mail_plus_relay.c).
 *
 * This header is private to proxy/: no other part includes it (the fuzz
 * targets of the pre-login reader do, with the reader's source).  What the
 * proxy uses of the router is in ngx_mail_plus.h.
 */


typedef struct {
    ngx_flag_t                  enable;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  login_timeout;
    ngx_msec_t                  timeout;
    size_t                      buffer_size;
    ngx_uint_t                  user_sessions;
    ngx_uint_t                  client_sessions;
    size_t                      command_size;
    size_t                      literal_size;

    /* "router_token_auth": the stock capabilities with the mechanisms */
    ngx_uint_t                  token_mechs;
    ngx_str_t                   imap_capability;
    ngx_str_t                   imap_starttls_capability;
    ngx_str_t                   pop3_capability;
    ngx_str_t                   pop3_starttls_capability;
    ngx_str_t                   pop3_auth_capability;
} ngx_mail_plus_proxy_conf_t;


/* the reader of commands before login (ngx_mail_plus_proxy_parse.c) */

#define NGX_MAIL_PLUS_PARSE_ARGS      3

#define NGX_MAIL_PLUS_PARSE_LITERAL   1   /* send "+", then read on */
#define NGX_MAIL_PLUS_PARSE_INVALID   2   /* a bad line was skipped */
#define NGX_MAIL_PLUS_PARSE_CLOSE     3   /* {n+} over the bound */
#define NGX_MAIL_PLUS_PARSE_TOO_LONG  4   /* the buffer is full */

#define NGX_MAIL_PLUS_PARSE_SYNTAX    1   /* p->error */
#define NGX_MAIL_PLUS_PARSE_BIG       2

#define NGX_MAIL_PLUS_CMD_UNKNOWN     0
#define NGX_MAIL_PLUS_CMD_CAPA        1   /* CAPA, CAPABILITY */
#define NGX_MAIL_PLUS_CMD_NOOP        2
#define NGX_MAIL_PLUS_CMD_QUIT        3   /* QUIT, LOGOUT */
#define NGX_MAIL_PLUS_CMD_STARTTLS    4   /* STLS, STARTTLS */
#define NGX_MAIL_PLUS_CMD_AUTH        5   /* AUTH, AUTHENTICATE */
#define NGX_MAIL_PLUS_CMD_LOGIN       6
#define NGX_MAIL_PLUS_CMD_ID          7
#define NGX_MAIL_PLUS_CMD_USER        8
#define NGX_MAIL_PLUS_CMD_PASS        9
#define NGX_MAIL_PLUS_CMD_APOP        10

typedef struct {
    ngx_uint_t                  state;
    ngx_uint_t                  protocol;     /* NGX_MAIL_PLUS_IMAP, POP3 */
    size_t                      literal_max;

    /* the command read last */
    ngx_uint_t                  command;      /* NGX_MAIL_PLUS_CMD_* */
    ngx_uint_t                  error;        /* NGX_MAIL_PLUS_PARSE_* */
    u_char                     *start;
    ngx_str_t                   tag;          /* IMAP, with its space */
    ngx_str_t                   name;
    ngx_str_t                   rest;         /* POP3: after the name */
    ngx_str_t                   args[NGX_MAIL_PLUS_PARSE_ARGS];
    ngx_uint_t                  nargs;        /* all, kept or not */

    /* within an argument */
    u_char                     *arg;
    u_char                     *dst;          /* quoted: unquoted so far */
    u_char                     *list;
    size_t                      literal;      /* its bytes still to come */
    ngx_uint_t                  depth;

    unsigned                    digits:1;
    unsigned                    plus:1;       /* {n+} */
    unsigned                    raw:1;        /* a SASL response line */
} ngx_mail_plus_parse_t;


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
    ngx_str_t                   up_login;     /* what the backend login */
    ngx_str_t                   up_password;  /* sends (a master user's
                                                 after a token login) */
    ngx_uint_t                  token_mech;   /* the backend login with the
                                                 token: NGX_MAIL_PLUS_SASL_*
                                                 chosen, 0 before */

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
    unsigned                    token_refused:1;  /* RFC 7628's error
                                                     exchange is due */
    unsigned                    token_login:1;  /* the backend login is
                                                   with the client's token */
    unsigned                    auth_oauthbearer:1;  /* the backend offers */
    unsigned                    auth_xoauth2:1;
    unsigned                    token_cont:1; /* the dummy response sent */

    /* before login */
    ngx_mail_plus_parse_t       parse;
    ngx_pool_t                 *login_pool;   /* the login given last */
    ngx_str_t                   login;        /* as given: to the router */
    ngx_uint_t                  token_sasl;   /* a token login's SASL
                                                 mechanism; s->passwd is
                                                 the token */
    u_char                     *out;          /* replies, reused */
    size_t                      out_size;
    ngx_str_t                   challenge;    /* CRAM-MD5, base64 */
    u_char                     *tag;          /* AUTHENTICATE's, kept */
    size_t                      tag_size;
} ngx_mail_plus_proxy_ctx_t;


/* s->mail_state before login: what the next line is */

#define NGX_MAIL_PLUS_STATE_COMMAND      0
#define NGX_MAIL_PLUS_STATE_USER         1   /* POP3: USER given */
#define NGX_MAIL_PLUS_STATE_PLAIN        2   /* SASL responses */
#define NGX_MAIL_PLUS_STATE_LOGIN_USER   3
#define NGX_MAIL_PLUS_STATE_LOGIN_PASS   4
#define NGX_MAIL_PLUS_STATE_CRAM_MD5     5
#define NGX_MAIL_PLUS_STATE_OAUTHBEARER  6
#define NGX_MAIL_PLUS_STATE_XOAUTH2      7
#define NGX_MAIL_PLUS_STATE_TOKEN_ERROR  8   /* the client's answer to the
                                                error challenge */


/* ngx_mail_plus_proxy_sasl_start() and _step() */

#define NGX_MAIL_PLUS_SASL_NEXT          0   /* a continuation is sent */
#define NGX_MAIL_PLUS_SASL_DONE          1   /* login and password given */
#define NGX_MAIL_PLUS_SASL_BAD           2   /* bad base64, bad shape */
#define NGX_MAIL_PLUS_SASL_AUTHZID       3   /* PLAIN: not the login */
#define NGX_MAIL_PLUS_SASL_UNSUPPORTED   4
#define NGX_MAIL_PLUS_SASL_CANCEL        5   /* "*" */
#define NGX_MAIL_PLUS_SASL_SYNTAX        6
#define NGX_MAIL_PLUS_SASL_FAILED        7   /* after a token's error */


/* the replies that differ by protocol only, ngx_mail_plus_proxy_texts[] */

typedef struct {
    ngx_str_t                   name;         /* in the session's log line */
    ngx_str_t                   too_many;     /* router_proxy_user_sessions */
    ngx_str_t                   tempfail;     /* the login failed for now */
    ngx_str_t                   failed;       /* the login was refused */
    ngx_str_t                   unavailable;  /* no backend answered */
} ngx_mail_plus_proxy_texts_t;


extern ngx_module_t                 ngx_mail_plus_proxy_module;
extern ngx_mail_plus_proxy_texts_t  ngx_mail_plus_proxy_texts[];

/* the protocols of "router_proxy on" servers, in their handlers' files */

extern ngx_mail_protocol_t          ngx_mail_plus_pop3_protocol;
extern ngx_mail_protocol_t          ngx_mail_plus_imap_protocol;


/*
 * a protocol's answer to one command read before login: NGX_OK, s->out is
 * the reply; NGX_DONE, ask the router; NGX_ERROR
 */

typedef ngx_int_t (*ngx_mail_plus_proxy_command_pt)(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_proxy_ctx_t *ctx, ngx_int_t rc);


/* ngx_mail_plus_proxy_module.c: the session around the dialogues */

void ngx_mail_plus_proxy_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t protocol, ngx_str_t *greeting,
    ngx_str_t *refusal, ngx_event_handler_pt init_protocol);
ngx_int_t ngx_mail_plus_proxy_init_protocol(ngx_event_t *rev);
void ngx_mail_plus_proxy_dialogue(ngx_event_t *rev,
    ngx_mail_plus_proxy_command_pt command, ngx_event_handler_pt handler);
ngx_int_t ngx_mail_plus_proxy_read_command(ngx_event_t *rev);
ngx_int_t ngx_mail_plus_proxy_parse_command(ngx_mail_session_t *s);
ngx_int_t ngx_mail_plus_proxy_flush(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_event_handler_pt handler);
ngx_str_t *ngx_mail_plus_proxy_capability(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_str_t *plain, ngx_str_t *starttls,
    ngx_str_t *starttls_only);
ngx_int_t ngx_mail_plus_proxy_starttls(ngx_mail_session_t *s,
    ngx_connection_t *c);
ngx_int_t ngx_mail_plus_proxy_set_login(ngx_mail_session_t *s,
    ngx_str_t *login);
ngx_int_t ngx_mail_plus_proxy_sasl_start(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t methods);
ngx_int_t ngx_mail_plus_proxy_sasl_step(ngx_mail_session_t *s,
    ngx_connection_t *c);
u_char *ngx_mail_plus_proxy_out(ngx_mail_session_t *s, size_t len);
ngx_int_t ngx_mail_plus_proxy_say(ngx_mail_session_t *s, ngx_str_t *untagged,
    ngx_uint_t tagged, ngx_str_t *text, ngx_str_t *tail);
void ngx_mail_plus_proxy_login(ngx_mail_session_t *s, ngx_connection_t *c);
void ngx_mail_plus_proxy_reply(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_uint_t tagged);
void ngx_mail_plus_proxy_resume(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_uint_t tagged, ngx_uint_t state);

/* ngx_mail_plus_proxy_token.c: token logins' mechanisms and errors */

char *ngx_mail_plus_proxy_token_conf(ngx_conf_t *cf,
    ngx_mail_plus_proxy_conf_t *conf);
ngx_str_t *ngx_mail_plus_proxy_token_capability(ngx_mail_session_t *s,
    ngx_str_t *capability);
ngx_uint_t ngx_mail_plus_proxy_token_mech(ngx_mail_session_t *s,
    ngx_str_t *mech);
void ngx_mail_plus_proxy_token_refused(ngx_mail_session_t *s);
void ngx_mail_plus_proxy_release_user(ngx_mail_plus_proxy_ctx_t *ctx);
void ngx_mail_plus_proxy_finalize(ngx_mail_session_t *s, ngx_uint_t end);

/* ngx_mail_plus_proxy_parse.c: the reader of commands before login */

void ngx_mail_plus_parse_init(ngx_mail_plus_parse_t *p, ngx_uint_t protocol,
    size_t literal_max);
ngx_int_t ngx_mail_plus_parse(ngx_mail_plus_parse_t *p, ngx_buf_t *b);
ngx_uint_t ngx_mail_plus_parse_idle(ngx_mail_plus_parse_t *p);

/* ngx_mail_plus_upstream.c: backend connection and login */

void ngx_mail_plus_upstream_connect(ngx_mail_session_t *s);
void ngx_mail_plus_upstream_close(ngx_mail_plus_proxy_ctx_t *ctx);

/* ngx_mail_plus_upstream_token.c: the backend login after a token login */

ngx_int_t ngx_mail_plus_upstream_token_init(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
ngx_int_t ngx_mail_plus_upstream_token_mech(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
size_t ngx_mail_plus_upstream_token_len(ngx_mail_plus_proxy_ctx_t *ctx);
u_char *ngx_mail_plus_upstream_token_response(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, u_char *p);
void ngx_mail_plus_upstream_token_cap(ngx_mail_plus_proxy_ctx_t *ctx,
    u_char *name, size_t len);
size_t ngx_mail_plus_token_sasl_len(ngx_str_t *login, ngx_str_t *host,
    ngx_str_t *token);
u_char *ngx_mail_plus_token_sasl(ngx_pool_t *pool, ngx_uint_t mech,
    ngx_str_t *login, ngx_str_t *host, in_port_t port, ngx_str_t *token,
    u_char *p);

/* ngx_mail_plus_relay.c: the relay, its pipes closed with the session */

void ngx_mail_plus_relay_start(ngx_mail_session_t *s);


#endif /* _NGX_MAIL_PLUS_PROXY_H_INCLUDED_ */
