
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#ifndef _NGX_MAIL_PLUS_TOKEN_INTROSPECT_H_INCLUDED_
#define _NGX_MAIL_PLUS_TOKEN_INTROSPECT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"


/*
 * Token introspection (RFC 7662), split in three:
 *
 *   - ngx_mail_plus_token_introspect.c: the directive, a request from the
 *     router (the cache first, then a connection or the queue), the
 *     endpoint's answer read as JSON and checked, the endpoint's state;
 *   - ngx_mail_plus_token_introspect_http.c: the connections to the
 *     endpoint, per worker, kept alive: connect, TLS, the POST written, the
 *     response read (status line, headers, a body by length, chunked or to
 *     the close), a timer on every step;
 *   - ngx_mail_plus_token_introspect_cache.c: the answers in the shared
 *     zone by the token's SHA-256, never the token.
 */


#define NGX_MAIL_PLUS_INTROSPECT_HEADER_MAX  8192
#define NGX_MAIL_PLUS_INTROSPECT_BODY_MAX    65536
#define NGX_MAIL_PLUS_INTROSPECT_WAITING     1000
#define NGX_MAIL_PLUS_INTROSPECT_IDLE        60000   /* ms, kept alive */


typedef struct ngx_mail_plus_introspect_s  ngx_mail_plus_introspect_t;


/* a connection to the endpoint, one request at a time */

typedef enum {
    ngx_introspect_closed = 0,
    ngx_introspect_connecting,
    ngx_introspect_handshake,
    ngx_introspect_writing,
    ngx_introspect_reading,
    ngx_introspect_idle
} ngx_mail_plus_introspect_state_e;


typedef struct {
    ngx_mail_plus_introspect_t     *ip;
    ngx_uint_t                      slot;
    ngx_mail_plus_introspect_state_e  state;

    ngx_peer_connection_t           peer;
    ngx_pool_t                     *mem;       /* the connection's */
    ngx_buf_t                      *in;        /* status line, headers */
    u_char                         *body;      /* BODY_MAX bytes */
    size_t                          body_len;

    ngx_mail_plus_token_req_t      *req;       /* the request on it */
    ngx_buf_t                      *out;       /* its POST: holds the
                                                  token, wiped when sent */
    ngx_uint_t                      requests;  /* sent on it so far */

    /* the response's parser */
    ngx_uint_t                      pstate;
    ngx_uint_t                      status;
    size_t                          header_len;
    off_t                           length;    /* -1: none given */
    off_t                           chunk;     /* left of a chunk */
    unsigned                        http10:1;
    unsigned                        chunked:1;
    unsigned                        close:1;
    unsigned                        keepalive:1;
    unsigned                        got_byte:1;
} ngx_mail_plus_introspect_conn_t;


/* a request waiting for a connection, in its pool */

typedef struct {
    ngx_queue_t                     queue;
    ngx_mail_plus_token_req_t      *req;
    ngx_msec_t                      deadline;
    u_char                          hash[32];  /* SHA-256 of the token */
    unsigned                        retried:1;
} ngx_mail_plus_introspect_ctx_t;


/* "router_token_introspect" and its connections in a worker */

struct ngx_mail_plus_introspect_s {
    ngx_str_t                       url;       /* as configured */
    ngx_addr_t                     *addr;
    ngx_str_t                       host;      /* the Host header */
    ngx_str_t                       name;      /* TLS: SNI and the check */
    ngx_str_t                       uri;
    ngx_str_t                       authorization;  /* "Basic ..." or "" */
    ngx_msec_t                      timeout;
    ngx_uint_t                      connections;
    time_t                          cache;
    ngx_flag_t                      verify;
    ngx_str_t                       trusted;
    ngx_mail_plus_token_conf_t     *tcf;
    ngx_mail_plus_main_conf_t      *mpcf;
#if (NGX_SSL)
    ngx_ssl_t                      *ssl;
#endif

    /* per worker */
    ngx_log_t                      *log;
    ngx_mail_plus_introspect_conn_t  *conns;
    ngx_queue_t                     waiting;   /* ..._ctx_t, oldest first */
    ngx_uint_t                      nwaiting;
    ngx_event_t                     wait_timer;  /* the oldest waiting's */
    ngx_atomic_t                    down;      /* without a zone */
    unsigned                        https:1;
    unsigned                        ip_name:1; /* the host is an address */
};


/* ngx_mail_plus_token_introspect.c */

void ngx_mail_plus_introspect_response(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, u_char *body, size_t len);
void ngx_mail_plus_introspect_tempfail(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, const char *reason);
void ngx_mail_plus_introspect_fail(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req, const char *reason);
ngx_int_t ngx_mail_plus_introspect_urlencode(ngx_pool_t *pool,
    ngx_str_t *src, ngx_str_t *dst);

/* ngx_mail_plus_token_introspect_http.c */

ngx_int_t ngx_mail_plus_introspect_send(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req);
void ngx_mail_plus_introspect_dispatch(ngx_mail_plus_introspect_t *ip);

/* ngx_mail_plus_token_introspect_cache.c */

ngx_int_t ngx_mail_plus_introspect_cache_get(ngx_mail_plus_introspect_t *ip,
    u_char *hash, ngx_uint_t *result, ngx_str_t *login, time_t *expires,
    ngx_pool_t *pool);
void ngx_mail_plus_introspect_cache_put(ngx_mail_plus_introspect_t *ip,
    u_char *hash, ngx_uint_t result, ngx_str_t *login, time_t exp);
ngx_atomic_t *ngx_mail_plus_introspect_down(ngx_mail_plus_introspect_t *ip);


#endif /* _NGX_MAIL_PLUS_TOKEN_INTROSPECT_H_INCLUDED_ */
