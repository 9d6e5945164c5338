
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_DIR_DOVECOT_H_INCLUDED_
#define _NGX_MAIL_PLUS_DIR_DOVECOT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"


/*
 * The "dovecot" directory: Dovecot's auth service.  Logins go to its
 * auth-client socket (AUTH with PLAIN; a token, for "router_token_dovecot",
 * with OAUTHBEARER or XOAUTH2), recipients to its auth-userdb or
 * auth-master socket (USER).  Each socket has, in each worker, a pool of
 * up to dir->connections connections, opened at the first lookup,
 * handshaken once and then reused; requests are multiplexed on them by
 * id, and wait in a bounded queue when every connection is busy.
 *
 * ngx_mail_plus_dir_dovecot.c: the configuration and the requests;
 * ngx_mail_plus_dir_dovecot_reply.c: the lines Dovecot sends, its
 * handshake and replies; ngx_mail_plus_dir_dovecot_conn.c: a connection,
 * its lines in and out, its timer.
 */


#define NGX_MAIL_PLUS_DOVECOT_LINE      8192    /* a line from Dovecot */
#define NGX_MAIL_PLUS_DOVECOT_OUT       16384   /* lines to Dovecot */
#define NGX_MAIL_PLUS_DOVECOT_QUEUE     1000    /* requests waiting */
#define NGX_MAIL_PLUS_DOVECOT_INFLIGHT  64      /* on one connection */


#define NGX_MAIL_PLUS_DOVECOT_CLOSED      0
#define NGX_MAIL_PLUS_DOVECOT_CONNECTING  1
#define NGX_MAIL_PLUS_DOVECOT_HANDSHAKE   2
#define NGX_MAIL_PLUS_DOVECOT_READY       3


typedef struct ngx_mail_plus_dovecot_pool_s  ngx_mail_plus_dovecot_pool_t;


typedef struct {
    ngx_mail_plus_dovecot_pool_t  *pool;
    ngx_peer_connection_t          peer;
    ngx_pool_t                    *mem;       /* while open */
    ngx_buf_t                     *in;
    ngx_buf_t                     *out;
    ngx_queue_t                    requests;  /* sent, oldest first */
    ngx_uint_t                     nrequests;
    ngx_uint_t                     state;
    ngx_uint_t                     slot;
    ngx_uint_t                     generation;  /* its opens */
    unsigned                       version:1;  /* VERSION read */
    unsigned                       plain:1;    /* MECH PLAIN read */
    unsigned                       oauthbearer:1;  /* MECH OAUTHBEARER */
    unsigned                       xoauth2:1;      /* MECH XOAUTH2 */
} ngx_mail_plus_dovecot_conn_t;


/* one socket of Dovecot's, in a worker */

struct ngx_mail_plus_dovecot_pool_s {
    ngx_mail_plus_dir_t           *dir;
    ngx_url_t                     *url;
    ngx_uint_t                     master;    /* the auth-userdb socket */
    ngx_mail_plus_dovecot_conn_t  *conns;     /* dir->connections */
    ngx_queue_t                    waiting;   /* requests not yet sent */
    ngx_uint_t                     nwaiting;
    ngx_queue_t                    done;      /* answered, to be told */
    ngx_event_t                    done_event;
    uint32_t                       id;        /* the last request's */
    uint32_t                       cpid;      /* the last connection's */
    ngx_log_t                     *log;
};


typedef struct {
    ngx_url_t                      auth;
    ngx_url_t                      master;    /* url.len 0: none */
    ngx_str_t                      service;   /* empty: the protocol's */
} ngx_mail_plus_dovecot_conf_t;


/* a worker's */

typedef struct {
    ngx_mail_plus_dovecot_pool_t   auth;
    ngx_mail_plus_dovecot_pool_t   master;
} ngx_mail_plus_dovecot_t;


/* a request's, while it is sent (req->ctx) */

typedef struct {
    uint32_t                       id;
    ngx_msec_t                     deadline;
    unsigned                       cont:1;    /* a token's error: the
                                                 dummy response sent */
} ngx_mail_plus_dovecot_req_t;


/* ngx_mail_plus_dir_dovecot.c */

void ngx_mail_plus_dovecot_answer(ngx_mail_plus_dovecot_pool_t *pool,
    ngx_mail_plus_dir_req_t *req, ngx_uint_t result, char *error);
void ngx_mail_plus_dovecot_dispatch(ngx_mail_plus_dovecot_pool_t *pool);

/* ngx_mail_plus_dir_dovecot_reply.c */

ngx_int_t ngx_mail_plus_dovecot_line(ngx_mail_plus_dovecot_conn_t *conn,
    u_char *line, size_t len);

/* ngx_mail_plus_dir_dovecot_conn.c */

ngx_int_t ngx_mail_plus_dovecot_connect(ngx_mail_plus_dovecot_conn_t *conn);
ngx_int_t ngx_mail_plus_dovecot_flush(ngx_mail_plus_dovecot_conn_t *conn);
void ngx_mail_plus_dovecot_timer(ngx_mail_plus_dovecot_conn_t *conn);
void ngx_mail_plus_dovecot_close(ngx_mail_plus_dovecot_conn_t *conn,
    char *reason);


#endif /* _NGX_MAIL_PLUS_DIR_DOVECOT_H_INCLUDED_ */
