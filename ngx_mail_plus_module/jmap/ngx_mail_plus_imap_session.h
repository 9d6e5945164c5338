
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_IMAP_SESSION_H_INCLUDED_
#define _NGX_MAIL_PLUS_IMAP_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include "ngx_mail_plus_imap_client.h"


/*
 * The IMAP client's own (imap->priv): the session of
 * ngx_mail_plus_imap_client.c and what the per-worker cache of idle
 * sessions (ngx_mail_plus_imap_keepalive.c) needs of it.
 */


#define NGX_MAIL_PLUS_IMAP_CONNECTING  1
#define NGX_MAIL_PLUS_IMAP_GREETING    2
#define NGX_MAIL_PLUS_IMAP_LOGIN       3   /* capability, login, enable */
#define NGX_MAIL_PLUS_IMAP_READY       4
#define NGX_MAIL_PLUS_IMAP_KEPT        5   /* idle, in the cache */
#define NGX_MAIL_PLUS_IMAP_FAILED      6


/* a piece of a command's text; "sync": wait for "+" once it is sent */

typedef struct {
    ngx_str_t                         data;
    unsigned                          sync:1;
} ngx_mail_plus_imap_part_t;


typedef struct {
    ngx_mail_plus_imap_t              imap;
    ngx_pool_t                       *pool;
    ngx_log_t                         log;
    ngx_mail_plus_imap_conf_t        *conf;
    ngx_uint_t                        state;

    void                             *route;     /* the request's, until
                                                    logged in */
    void                             *server;    /* ngx_mail_plus_server_t:
                                                    with port and login, the
                                                    key of the cache */
    in_port_t                         port;
    ngx_str_t                         login;
    ngx_str_t                         secret;    /* until logged in */

    ngx_peer_connection_t             peer;
    ngx_str_t                         name;      /* address:port */
    u_char                            name_text[NGX_SOCKADDR_STRLEN];
    ngx_connection_t                 *connection;
    ngx_buf_t                        *in;
    ngx_mail_plus_imap_parser_t       parser;
    size_t                            spare;     /* bytes of responses kept
                                                    in the session's pool */

    ngx_event_t                       timer;
    ngx_event_t                       post;      /* fails the queue */
    ngx_queue_t                       queue;     /* in the cache */
    ngx_msec_t                        kept;      /* since when */

    ngx_mail_plus_imap_cmd_t         *current;
    ngx_mail_plus_imap_cmd_t         *head;
    ngx_mail_plus_imap_cmd_t         *tail;
    ngx_uint_t                        part;      /* the next to send */
    ngx_chain_t                      *out;
    ngx_uint_t                        tag;
    ngx_uint_t                        calling;   /* in a handler */

    unsigned                          mid:1;     /* inside a response */
    unsigned                          released:1;  /* while calling */
    unsigned                          keep:1;
    unsigned                          failed:1;
    unsigned                          bye:1;
    unsigned                          tag_sent:1;
    unsigned                          crlf_sent:1;
    unsigned                          wait_cont:1;
    unsigned                          selecting:1;
    unsigned                          token:1;   /* secret is a token */

    /* what the backend offers */
    unsigned                          caps:1;    /* known */
    unsigned                          logged_in:1;
    unsigned                          enabled:1; /* ENABLE done */
    unsigned                          literal_minus:1;
    unsigned                          offer_condstore:1;
    unsigned                          offer_qresync:1;
    unsigned                          sasl_ir:1;
    unsigned                          oauthbearer:1;
    unsigned                          xoauth2:1;
    unsigned                          login_disabled:1;
} ngx_mail_plus_imap_session_t;


/* ngx_mail_plus_imap_client.c */

void ngx_mail_plus_imap_close(ngx_mail_plus_imap_session_t *s);
void ngx_mail_plus_imap_read_handler(ngx_event_t *rev);
void ngx_mail_plus_imap_write_handler(ngx_event_t *wev);

/* ngx_mail_plus_imap_keepalive.c: a kept session of the key, or NULL */

ngx_mail_plus_imap_session_t *ngx_mail_plus_imap_keepalive_get(void *server,
    in_port_t port, ngx_str_t *login, ngx_log_t *log);
ngx_int_t ngx_mail_plus_imap_keepalive_put(ngx_mail_plus_imap_session_t *s);
void ngx_mail_plus_imap_keepalive_drop(ngx_mail_plus_imap_session_t *s,
    const char *why);


#endif /* _NGX_MAIL_PLUS_IMAP_SESSION_H_INCLUDED_ */
