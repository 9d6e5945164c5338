
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token_introspect.h"


/*
 * The connections of a worker to the introspection endpoint: at most
 * "connections=", one request at a time on each, kept alive between
 * requests (idle for 60 s at most).  A request finds an idle connection,
 * or opens a closed one, or waits in a bounded queue ("timeout=" at
 * most).  Each step has its timer, on the read event: the connect, the
 * TLS handshake, the request written, the response read.  The response
 * is read by a small parser: the status line, headers (8k at most), a
 * body of 64k at most by Content-Length, chunked, or up to the close.
 * A connection used again that fails before a byte of the answer is read
 * (the endpoint closed it meanwhile) is opened again once.
 */


#define NGX_INTROSPECT_STATUS      0
#define NGX_INTROSPECT_HEADER      1
#define NGX_INTROSPECT_BODY        2
#define NGX_INTROSPECT_BODY_CLOSE  3
#define NGX_INTROSPECT_CHUNK_SIZE  4
#define NGX_INTROSPECT_CHUNK_DATA  5
#define NGX_INTROSPECT_CHUNK_CRLF  6
#define NGX_INTROSPECT_TRAILER     7
#define NGX_INTROSPECT_DONE        8


static void ngx_mail_plus_introspect_init(ngx_mail_plus_introspect_t *ip);
static ngx_mail_plus_introspect_conn_t *ngx_mail_plus_introspect_free(
    ngx_mail_plus_introspect_t *ip);
static ngx_int_t ngx_mail_plus_introspect_start(
    ngx_mail_plus_introspect_conn_t *conn, ngx_mail_plus_token_req_t *req,
    const char **reason);
static ngx_int_t ngx_mail_plus_introspect_request(
    ngx_mail_plus_introspect_conn_t *conn, ngx_mail_plus_token_req_t *req);
static ngx_int_t ngx_mail_plus_introspect_connect(
    ngx_mail_plus_introspect_conn_t *conn, const char **reason);
static void ngx_mail_plus_introspect_connected(
    ngx_mail_plus_introspect_conn_t *conn);
#if (NGX_SSL)
static void ngx_mail_plus_introspect_handshake(ngx_connection_t *c);
static const char *ngx_mail_plus_introspect_verify(
    ngx_mail_plus_introspect_conn_t *conn);
#endif
static void ngx_mail_plus_introspect_write(ngx_event_t *wev);
static void ngx_mail_plus_introspect_read(ngx_event_t *rev);
static ngx_int_t ngx_mail_plus_introspect_parse(
    ngx_mail_plus_introspect_conn_t *conn, const char **reason);
static ngx_int_t ngx_mail_plus_introspect_line(
    ngx_mail_plus_introspect_conn_t *conn, u_char *p, u_char *last,
    const char **reason);
static ngx_int_t ngx_mail_plus_introspect_status(
    ngx_mail_plus_introspect_conn_t *conn, u_char *p, u_char *last,
    const char **reason);
static ngx_int_t ngx_mail_plus_introspect_header(
    ngx_mail_plus_introspect_conn_t *conn, u_char *p, u_char *last,
    const char **reason);
static ngx_int_t ngx_mail_plus_introspect_chunk_size(
    ngx_mail_plus_introspect_conn_t *conn, u_char *p, u_char *last,
    const char **reason);
static void ngx_mail_plus_introspect_complete(
    ngx_mail_plus_introspect_conn_t *conn);
static void ngx_mail_plus_introspect_error(
    ngx_mail_plus_introspect_conn_t *conn, const char *reason);
static void ngx_mail_plus_introspect_idle(ngx_event_t *ev);
static void ngx_mail_plus_introspect_close(
    ngx_mail_plus_introspect_conn_t *conn);
static void ngx_mail_plus_introspect_wipe(
    ngx_mail_plus_introspect_conn_t *conn);
static void ngx_mail_plus_introspect_timer(ngx_mail_plus_introspect_conn_t
    *conn);
static void ngx_mail_plus_introspect_wait_timer(ngx_mail_plus_introspect_t *ip);
static void ngx_mail_plus_introspect_waited(ngx_event_t *ev);
static u_char *ngx_mail_plus_introspect_log_error(ngx_log_t *log, u_char *buf,
    size_t len);


/* a request from the router: NGX_AGAIN, or NGX_OK when answered now */

ngx_int_t
ngx_mail_plus_introspect_send(ngx_mail_plus_introspect_t *ip,
    ngx_mail_plus_token_req_t *req)
{
    const char                      *reason;
    ngx_mail_plus_introspect_ctx_t  *ctx;
    ngx_mail_plus_introspect_conn_t *conn;

    if (ip->log == NULL) {
        ngx_mail_plus_introspect_init(ip);
    }

    ctx = req->ctx;

    if (ngx_queue_empty(&ip->waiting)) {
        conn = ngx_mail_plus_introspect_free(ip);

        if (conn) {
            if (ngx_mail_plus_introspect_start(conn, req, &reason) != NGX_OK)
            {
                ngx_mail_plus_introspect_tempfail(ip, req, reason);
                return NGX_OK;
            }

            return NGX_AGAIN;
        }
    }

    if (ip->nwaiting >= NGX_MAIL_PLUS_INTROSPECT_WAITING) {
        req->result = NGX_MAIL_PLUS_TOKEN_TEMPFAIL;
        req->error = "too many token introspection requests waiting";
        return NGX_OK;
    }

    ctx->deadline = ngx_current_msec + ip->timeout;
    ngx_queue_insert_tail(&ip->waiting, &ctx->queue);
    ip->nwaiting++;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: token introspection request waits, %ui waiting",
                   ip->nwaiting);

    ngx_mail_plus_introspect_wait_timer(ip);

    return NGX_AGAIN;
}


/* a worker's first request: its log, its queue's timer */

static void
ngx_mail_plus_introspect_init(ngx_mail_plus_introspect_t *ip)
{
    ngx_log_t  *log;

    log = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_log_t));

    if (log == NULL) {
        ip->log = ngx_cycle->log;

    } else {
        *log = *ngx_cycle->log;
        log->handler = ngx_mail_plus_introspect_log_error;
        log->data = ip;
        log->action = NULL;
        ip->log = log;
    }

    ip->wait_timer.handler = ngx_mail_plus_introspect_waited;
    ip->wait_timer.data = ip;
    ip->wait_timer.log = ip->log;
    ip->wait_timer.cancelable = 1;
}


static u_char *
ngx_mail_plus_introspect_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_mail_plus_introspect_t  *ip;

    ip = log->data;

    return ngx_snprintf(buf, len,
                        " while asking the token introspection endpoint %V",
                        &ip->url);
}


/* an idle connection, else a closed one, else none */

static ngx_mail_plus_introspect_conn_t *
ngx_mail_plus_introspect_free(ngx_mail_plus_introspect_t *ip)
{
    ngx_uint_t                        i;
    ngx_mail_plus_introspect_conn_t  *closed;

    closed = NULL;

    for (i = 0; i < ip->connections; i++) {
        if (ip->conns[i].state == ngx_introspect_idle) {
            return &ip->conns[i];
        }

        if (ip->conns[i].state == ngx_introspect_closed && closed == NULL) {
            closed = &ip->conns[i];
        }
    }

    return closed;
}


/* the requests waiting, on the connections free */

void
ngx_mail_plus_introspect_dispatch(ngx_mail_plus_introspect_t *ip)
{
    const char                       *reason;
    ngx_queue_t                      *q;
    ngx_mail_plus_token_req_t        *req;
    ngx_mail_plus_introspect_ctx_t   *ctx;
    ngx_mail_plus_introspect_conn_t  *conn;

    while (!ngx_queue_empty(&ip->waiting)) {

        conn = ngx_mail_plus_introspect_free(ip);
        if (conn == NULL) {
            break;
        }

        q = ngx_queue_head(&ip->waiting);
        ngx_queue_remove(q);
        ip->nwaiting--;

        ctx = ngx_queue_data(q, ngx_mail_plus_introspect_ctx_t, queue);
        req = ctx->req;

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                       "router: token introspection request %p dequeued, "
                       "%ui waiting", req, ip->nwaiting);

        if (req->cancelled) {
            ngx_mail_plus_token_done(req);
            continue;
        }

        if (ngx_mail_plus_introspect_start(conn, req, &reason) != NGX_OK) {
            ngx_mail_plus_introspect_fail(ip, req, reason);
        }
    }

    ngx_mail_plus_introspect_wait_timer(ip);
}


/* the request on a connection: NGX_OK, or NGX_ERROR with the reason */

static ngx_int_t
ngx_mail_plus_introspect_start(ngx_mail_plus_introspect_conn_t *conn,
    ngx_mail_plus_token_req_t *req, const char **reason)
{
    ngx_connection_t  *c;

    if (ngx_mail_plus_introspect_request(conn, req) != NGX_OK) {
        *reason = "out of memory";
        return NGX_ERROR;
    }

    if (conn->state == ngx_introspect_closed) {
        return ngx_mail_plus_introspect_connect(conn, reason);
    }

    /* an idle connection, used again */

    c = conn->peer.connection;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "router: token introspection connection %ui reused, "
                   "request %ui", conn->slot, conn->requests);

    c->idle = 0;
    ngx_reusable_connection(c, 0);

    c->read->handler = ngx_mail_plus_introspect_read;
    c->write->handler = ngx_mail_plus_introspect_write;
    c->read->cancelable = 0;

    conn->state = ngx_introspect_writing;
    ngx_mail_plus_introspect_timer(conn);

    ngx_mail_plus_introspect_write(c->write);

    return NGX_OK;
}


/* the POST, in the request's pool: it holds the token */

static ngx_int_t
ngx_mail_plus_introspect_request(ngx_mail_plus_introspect_conn_t *conn,
    ngx_mail_plus_token_req_t *req)
{
    size_t                       len, body;
    ngx_buf_t                   *b;
    ngx_str_t                    token;
    ngx_mail_plus_introspect_t  *ip;

    ip = conn->ip;

    if (ngx_mail_plus_introspect_urlencode(req->pool, &req->token, &token)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    body = sizeof("token=") - 1 + token.len
           + sizeof("&token_type_hint=access_token") - 1;

    len = sizeof("POST  HTTP/1.1" CRLF) - 1 + ip->uri.len
          + sizeof("Host: " CRLF) - 1 + ip->host.len
          + sizeof("Authorization: " CRLF) - 1 + ip->authorization.len
          + sizeof("Content-Type: application/x-www-form-urlencoded" CRLF)
          - 1
          + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
          + sizeof("Accept: application/json" CRLF) - 1
          + sizeof("Connection: keep-alive" CRLF CRLF) - 1
          + body;

    b = ngx_create_temp_buf(req->pool, len);
    if (b == NULL) {
        ngx_explicit_memzero(token.data, token.len);
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last, "POST %V HTTP/1.1" CRLF "Host: %V" CRLF,
                          &ip->uri, &ip->host);

    if (ip->authorization.len) {
        b->last = ngx_sprintf(b->last, "Authorization: %V" CRLF,
                              &ip->authorization);
    }

    b->last = ngx_sprintf(b->last,
                          "Content-Type: application/x-www-form-urlencoded"
                          CRLF "Content-Length: %uz" CRLF
                          "Accept: application/json" CRLF
                          "Connection: keep-alive" CRLF CRLF, body);

    b->last = ngx_cpymem(b->last, "token=", sizeof("token=") - 1);
    b->last = ngx_cpymem(b->last, token.data, token.len);
    b->last = ngx_cpymem(b->last, "&token_type_hint=access_token",
                         sizeof("&token_type_hint=access_token") - 1);

    ngx_explicit_memzero(token.data, token.len);

    conn->req = req;
    conn->out = b;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_introspect_connect(ngx_mail_plus_introspect_conn_t *conn,
    const char **reason)
{
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_mail_plus_introspect_t  *ip;

    ip = conn->ip;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                   "router: token introspection connection %ui to %V",
                   conn->slot, &ip->addr->name);

    conn->mem = ngx_create_pool(1024, ip->log);
    if (conn->mem == NULL) {
        goto nomem;
    }

    conn->in = ngx_create_temp_buf(conn->mem,
                                   NGX_MAIL_PLUS_INTROSPECT_HEADER_MAX);
    if (conn->in == NULL) {
        goto nomem;
    }

    ngx_memzero(&conn->peer, sizeof(ngx_peer_connection_t));

    conn->peer.sockaddr = ip->addr->sockaddr;
    conn->peer.socklen = ip->addr->socklen;
    conn->peer.name = &ip->addr->name;
    conn->peer.get = ngx_event_get_peer;
    conn->peer.log = ip->log;
    conn->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&conn->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        *reason = "the connection failed";
        ngx_mail_plus_introspect_close(conn);
        return NGX_ERROR;
    }

    c = conn->peer.connection;

    c->data = conn;
    c->pool = conn->mem;
    c->log = ip->log;
    c->read->log = ip->log;
    c->write->log = ip->log;
    c->read->handler = ngx_mail_plus_introspect_read;
    c->write->handler = ngx_mail_plus_introspect_write;

    conn->requests = 0;
    conn->state = ngx_introspect_connecting;

    ngx_mail_plus_introspect_timer(conn);

    if (rc == NGX_OK) {
        ngx_mail_plus_introspect_connected(conn);
    }

    return NGX_OK;

nomem:

    *reason = "out of memory";
    ngx_mail_plus_introspect_close(conn);

    return NGX_ERROR;
}


/* connected: TLS first for https, else the request */

static void
ngx_mail_plus_introspect_connected(ngx_mail_plus_introspect_conn_t *conn)
{
    int                err;
    socklen_t          len;
    ngx_connection_t  *c;
#if (NGX_SSL)
    ngx_int_t          rc;
#endif

    c = conn->peer.connection;

    /* a connect that went on in the background: did it succeed? */

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_ERR, c->log, err, "connect() to %V failed",
                      &conn->ip->addr->name);
        ngx_mail_plus_introspect_error(conn, "the connection failed");
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "router: token introspection connection %ui connected",
                   conn->slot);

    if (!conn->ip->https) {
        conn->state = ngx_introspect_writing;
        ngx_mail_plus_introspect_timer(conn);
        ngx_mail_plus_introspect_write(c->write);
        return;
    }

#if (NGX_SSL)

    conn->state = ngx_introspect_handshake;
    ngx_mail_plus_introspect_timer(conn);

    if (ngx_ssl_create_connection(conn->ip->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_mail_plus_introspect_error(conn, "TLS setup failed");
        return;
    }

    if (!conn->ip->ip_name
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) conn->ip->name.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_set_tlsext_host_name(\"%V\") failed",
                      &conn->ip->name);
        ngx_mail_plus_introspect_error(conn, "TLS setup failed");
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_mail_plus_introspect_handshake;
        return;
    }

    ngx_mail_plus_introspect_handshake(c);

#endif
}


#if (NGX_SSL)

static void
ngx_mail_plus_introspect_handshake(ngx_connection_t *c)
{
    const char                       *reason;
    ngx_mail_plus_introspect_conn_t  *conn;

    conn = c->data;

    if (!c->ssl->handshaked) {
        ngx_mail_plus_introspect_error(conn,
                                       c->read->timedout || c->write->timedout
                                       ? "timed out in the TLS handshake"
                                       : "the TLS handshake failed");
        return;
    }

    if (conn->ip->verify) {
        reason = ngx_mail_plus_introspect_verify(conn);

        if (reason) {
            ngx_mail_plus_introspect_error(conn, reason);
            return;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "router: token introspection connection %ui TLS done, "
                   "verify:%i", conn->slot, conn->ip->verify);

    c->read->handler = ngx_mail_plus_introspect_read;
    c->write->handler = ngx_mail_plus_introspect_write;

    conn->state = ngx_introspect_writing;
    ngx_mail_plus_introspect_timer(conn);

    ngx_mail_plus_introspect_write(c->write);
}


/* the chain up to a trusted certificate, and the URL's host in it */

static const char *
ngx_mail_plus_introspect_verify(ngx_mail_plus_introspect_conn_t *conn)
{
    long               rc;
    X509              *cert;
    ngx_int_t          ok;
    ngx_connection_t  *c;

    c = conn->peer.connection;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "token introspection: the endpoint's certificate "
                      "does not verify: (%l:%s)", rc,
                      X509_verify_cert_error_string(rc));
        return "its certificate does not verify";
    }

    if (!conn->ip->ip_name) {
        ok = (ngx_ssl_check_host(c, &conn->ip->name) == NGX_OK);

    } else {
        cert = SSL_get1_peer_certificate(c->ssl->connection);

        ok = cert
             && X509_check_ip_asc(cert, (char *) conn->ip->name.data, 0)
                == 1;

        if (cert) {
            X509_free(cert);
        }
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "token introspection: the endpoint's certificate "
                      "does not match \"%V\"", &conn->ip->name);
        return "its certificate does not match its name";
    }

    return NULL;
}

#endif


static void
ngx_mail_plus_introspect_write(ngx_event_t *wev)
{
    ssize_t                           n;
    ngx_buf_t                        *b;
    ngx_connection_t                 *c;
    ngx_mail_plus_introspect_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    if (conn->state == ngx_introspect_connecting) {
        ngx_mail_plus_introspect_connected(conn);
        return;
    }

    if (conn->state != ngx_introspect_writing) {
        return;
    }

    b = conn->out;

    while (b->pos < b->last) {

        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_mail_plus_introspect_error(conn, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_mail_plus_introspect_error(conn, "the connection failed");
            return;
        }

        b->pos += n;
    }

    ngx_mail_plus_introspect_wipe(conn);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "router: token introspection connection %ui request %ui "
                   "sent", conn->slot, conn->requests);

    conn->requests++;
    conn->state = ngx_introspect_reading;
    conn->pstate = NGX_INTROSPECT_STATUS;
    conn->status = 0;
    conn->header_len = 0;
    conn->length = -1;
    conn->chunk = 0;
    conn->body_len = 0;
    conn->http10 = 0;
    conn->chunked = 0;
    conn->close = 0;
    conn->keepalive = 0;
    conn->got_byte = 0;
    conn->in->pos = conn->in->start;
    conn->in->last = conn->in->start;

    ngx_mail_plus_introspect_timer(conn);

    ngx_mail_plus_introspect_read(c->read);
}


static void
ngx_mail_plus_introspect_read(ngx_event_t *rev)
{
    ssize_t                           n;
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    const char                       *reason;
    ngx_connection_t                 *c;
    ngx_mail_plus_introspect_conn_t  *conn;

    c = rev->data;
    conn = c->data;

    if (rev->timedout) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "router: token introspection connection %ui timer "
                       "fired in state %ui", conn->slot,
                       (ngx_uint_t) conn->state);

        ngx_mail_plus_introspect_error(conn,
                          conn->state == ngx_introspect_connecting
                          ? "timed out connecting"
                          : conn->state == ngx_introspect_writing
                          ? "timed out sending the request"
                          : "timed out waiting for the answer");
        return;
    }

    if (conn->state == ngx_introspect_connecting) {
        ngx_mail_plus_introspect_connected(conn);
        return;
    }

    if (conn->state != ngx_introspect_reading) {
        return;
    }

    b = conn->in;

    for ( ;; ) {

        if (b->last == b->end) {
            if (b->pos == b->start) {
                ngx_mail_plus_introspect_error(conn,
                                               "a header line too long");
                return;
            }

            b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
            b->pos = b->start;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            if (n == 0 && conn->pstate == NGX_INTROSPECT_BODY_CLOSE) {
                conn->close = 1;
                conn->pstate = NGX_INTROSPECT_DONE;
                ngx_mail_plus_introspect_complete(conn);
                return;
            }

            ngx_mail_plus_introspect_error(conn,
                                           "the connection was closed");
            return;
        }

        conn->got_byte = 1;
        b->last += n;

        rc = ngx_mail_plus_introspect_parse(conn, &reason);

        if (rc == NGX_ERROR) {
            ngx_mail_plus_introspect_error(conn, reason);
            return;
        }

        if (rc == NGX_OK) {
            ngx_mail_plus_introspect_complete(conn);
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_plus_introspect_error(conn, "event error");
    }
}


/* what was read: NGX_OK (the response whole), NGX_AGAIN, NGX_ERROR */

static ngx_int_t
ngx_mail_plus_introspect_parse(ngx_mail_plus_introspect_conn_t *conn,
    const char **reason)
{
    u_char     *lf, *end;
    size_t      n;
    ngx_buf_t  *b;

    b = conn->in;

    while (b->pos < b->last) {

        switch (conn->pstate) {

        case NGX_INTROSPECT_BODY:
        case NGX_INTROSPECT_BODY_CLOSE:
        case NGX_INTROSPECT_CHUNK_DATA:

            n = b->last - b->pos;

            if (conn->pstate == NGX_INTROSPECT_BODY
                && n > (size_t) conn->length - conn->body_len)
            {
                n = (size_t) conn->length - conn->body_len;
            }

            if (conn->pstate == NGX_INTROSPECT_CHUNK_DATA
                && n > (size_t) conn->chunk)
            {
                n = (size_t) conn->chunk;
            }

            if (conn->body_len + n > NGX_MAIL_PLUS_INTROSPECT_BODY_MAX) {
                *reason = "the answer is too long";
                return NGX_ERROR;
            }

            ngx_memcpy(conn->body + conn->body_len, b->pos, n);
            conn->body_len += n;
            b->pos += n;

            if (conn->pstate == NGX_INTROSPECT_BODY
                && conn->body_len == (size_t) conn->length)
            {
                conn->pstate = NGX_INTROSPECT_DONE;
            }

            if (conn->pstate == NGX_INTROSPECT_CHUNK_DATA) {
                conn->chunk -= n;

                if (conn->chunk == 0) {
                    conn->pstate = NGX_INTROSPECT_CHUNK_CRLF;
                }
            }

            break;

        case NGX_INTROSPECT_DONE:

            /* more than the answer: the connection is not used again */

            conn->close = 1;
            return NGX_OK;

        default:

            lf = ngx_strlchr(b->pos, b->last, LF);

            if (lf == NULL) {
                if (conn->header_len + (b->last - b->pos)
                    > NGX_MAIL_PLUS_INTROSPECT_HEADER_MAX)
                {
                    *reason = "the answer's headers are too long";
                    return NGX_ERROR;
                }

                return NGX_AGAIN;
            }

            conn->header_len += lf + 1 - b->pos;

            if (conn->header_len > NGX_MAIL_PLUS_INTROSPECT_HEADER_MAX) {
                *reason = "the answer's headers are too long";
                return NGX_ERROR;
            }

            end = (lf > b->pos && lf[-1] == CR) ? lf - 1 : lf;

            if (ngx_mail_plus_introspect_line(conn, b->pos, end, reason)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            b->pos = lf + 1;
        }

        if (conn->pstate == NGX_INTROSPECT_DONE && b->pos == b->last) {
            return NGX_OK;
        }
    }

    if (conn->pstate == NGX_INTROSPECT_DONE) {
        return NGX_OK;
    }

    b->pos = b->start;
    b->last = b->start;

    return NGX_AGAIN;
}


/* a line of the status, the headers, a chunk's size or the trailer */

static ngx_int_t
ngx_mail_plus_introspect_line(ngx_mail_plus_introspect_conn_t *conn,
    u_char *p, u_char *last, const char **reason)
{
    u_char  *s;

    for (s = p; s < last; s++) {
        if ((*s < 0x20 && *s != '\t') || *s == 0x7f) {
            *reason = "a control character in the answer's headers";
            return NGX_ERROR;
        }
    }

    switch (conn->pstate) {

    case NGX_INTROSPECT_STATUS:
        return ngx_mail_plus_introspect_status(conn, p, last, reason);

    case NGX_INTROSPECT_HEADER:
        return ngx_mail_plus_introspect_header(conn, p, last, reason);

    case NGX_INTROSPECT_CHUNK_SIZE:
        return ngx_mail_plus_introspect_chunk_size(conn, p, last, reason);

    case NGX_INTROSPECT_CHUNK_CRLF:

        if (p != last) {
            *reason = "a chunk not followed by CRLF";
            return NGX_ERROR;
        }

        conn->pstate = NGX_INTROSPECT_CHUNK_SIZE;
        return NGX_OK;

    default: /* NGX_INTROSPECT_TRAILER */

        if (p == last) {
            conn->pstate = NGX_INTROSPECT_DONE;
        }

        return NGX_OK;
    }
}


/* "HTTP/1.x 200 ...": another status is an error, by its class */

static ngx_int_t
ngx_mail_plus_introspect_status(ngx_mail_plus_introspect_conn_t *conn,
    u_char *p, u_char *last, const char **reason)
{
    if (last - p < 12
        || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || (p[7] != '0' && p[7] != '1')
        || p[8] != ' '
        || p[9] < '0' || p[9] > '9'
        || p[10] < '0' || p[10] > '9'
        || p[11] < '0' || p[11] > '9'
        || (last - p > 12 && p[12] != ' '))
    {
        *reason = "the answer is not HTTP";
        return NGX_ERROR;
    }

    conn->http10 = (p[7] == '0');
    conn->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, conn->ip->log, 0,
                   "router: token introspection connection %ui status %ui",
                   conn->slot, conn->status);

    /* fixed texts: a reason may be logged after the next answer */

    if (conn->status != 200) {
        *reason = (conn->status >= 500 && conn->status < 600)
                  ? "it answered with a server error status (5xx)"
                  : (conn->status >= 400 && conn->status < 500)
                    ? "it answered with a client error status (4xx)"
                    : "it answered with a status other than 200";
        return NGX_ERROR;
    }

    conn->pstate = NGX_INTROSPECT_HEADER;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_introspect_header(ngx_mail_plus_introspect_conn_t *conn,
    u_char *p, u_char *last, const char **reason)
{
    u_char     *colon;
    ngx_int_t   n;
    ngx_str_t   name, value;

    if (p == last) {

        /* the end of the headers: how the body ends */

        if (conn->chunked && conn->length != -1) {
            *reason = "both Content-Length and chunked in the answer";
            return NGX_ERROR;
        }

        if (conn->body == NULL) {
            conn->body = ngx_pnalloc(conn->mem,
                                     NGX_MAIL_PLUS_INTROSPECT_BODY_MAX);
            if (conn->body == NULL) {
                *reason = "out of memory";
                return NGX_ERROR;
            }
        }

        if (conn->chunked) {
            conn->pstate = NGX_INTROSPECT_CHUNK_SIZE;

        } else if (conn->length == 0) {
            conn->pstate = NGX_INTROSPECT_DONE;

        } else if (conn->length > 0) {
            conn->pstate = NGX_INTROSPECT_BODY;

        } else {
            conn->pstate = NGX_INTROSPECT_BODY_CLOSE;
            conn->close = 1;
        }

        /* the headers' limit goes on with the chunks' lines */

        conn->header_len = 0;

        return NGX_OK;
    }

    if (*p == ' ' || *p == '\t') {
        *reason = "a folded header line in the answer";
        return NGX_ERROR;
    }

    colon = ngx_strlchr(p, last, ':');

    if (colon == NULL || colon == p) {
        *reason = "a bad header line in the answer";
        return NGX_ERROR;
    }

    name.data = p;
    name.len = colon - p;

    value.data = colon + 1;

    while (value.data < last && (*value.data == ' ' || *value.data == '\t')) {
        value.data++;
    }

    while (last > value.data && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    value.len = last - value.data;

    if (name.len == sizeof("Content-Length") - 1
        && ngx_strncasecmp(name.data, (u_char *) "Content-Length", name.len)
           == 0)
    {
        n = ngx_atoi(value.data, value.len);

        if (n == NGX_ERROR || (conn->length != -1 && conn->length != n)) {
            *reason = "a bad Content-Length in the answer";
            return NGX_ERROR;
        }

        if (n > NGX_MAIL_PLUS_INTROSPECT_BODY_MAX) {
            *reason = "the answer is too long";
            return NGX_ERROR;
        }

        conn->length = n;

    } else if (name.len == sizeof("Transfer-Encoding") - 1
               && ngx_strncasecmp(name.data, (u_char *) "Transfer-Encoding",
                                  name.len)
                  == 0)
    {
        if (value.len != sizeof("chunked") - 1
            || ngx_strncasecmp(value.data, (u_char *) "chunked", value.len)
               != 0)
        {
            *reason = "a transfer encoding other than chunked in the answer";
            return NGX_ERROR;
        }

        conn->chunked = 1;

    } else if (name.len == sizeof("Connection") - 1
               && ngx_strncasecmp(name.data, (u_char *) "Connection",
                                  name.len)
                  == 0)
    {
        if (ngx_strlcasestrn(value.data, value.data + value.len,
                             (u_char *) "close", sizeof("close") - 2))
        {
            conn->close = 1;
        }

        if (ngx_strlcasestrn(value.data, value.data + value.len,
                             (u_char *) "keep-alive",
                             sizeof("keep-alive") - 2))
        {
            conn->keepalive = 1;
        }
    }

    return NGX_OK;
}


/* a chunk's size in hex, maybe with extensions; 0: the last chunk */

static ngx_int_t
ngx_mail_plus_introspect_chunk_size(ngx_mail_plus_introspect_conn_t *conn,
    u_char *p, u_char *last, const char **reason)
{
    u_char  c;
    off_t   size;

    size = 0;

    if (p == last) {
        *reason = "a bad chunk size in the answer";
        return NGX_ERROR;
    }

    for ( /* void */ ; p < last; p++) {
        c = *p;

        if (c >= '0' && c <= '9') {
            size = size * 16 + (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            size = size * 16 + ((c | 0x20) - 'a' + 10);

        } else if (c == ';' || c == ' ' || c == '\t') {
            break;

        } else {
            *reason = "a bad chunk size in the answer";
            return NGX_ERROR;
        }

        if (size > NGX_MAIL_PLUS_INTROSPECT_BODY_MAX) {
            *reason = "the answer is too long";
            return NGX_ERROR;
        }
    }

    if (conn->body_len + size > NGX_MAIL_PLUS_INTROSPECT_BODY_MAX) {
        *reason = "the answer is too long";
        return NGX_ERROR;
    }

    conn->chunk = size;
    conn->pstate = size ? NGX_INTROSPECT_CHUNK_DATA : NGX_INTROSPECT_TRAILER;

    return NGX_OK;
}


/*
 * The response read whole: the connection is kept if it may be, the
 * requests waiting get the free connections, then the answer is read.
 */

static void
ngx_mail_plus_introspect_complete(ngx_mail_plus_introspect_conn_t *conn)
{
    u_char                      *body;
    size_t                       len;
    ngx_connection_t            *c;
    ngx_mail_plus_token_req_t   *req;
    ngx_mail_plus_introspect_t  *ip;

    ip = conn->ip;
    req = conn->req;
    c = conn->peer.connection;

    conn->req = NULL;

    /* the body outlives the connection */

    len = conn->body_len;
    body = ngx_pnalloc(req->pool, len + 1);

    if (body) {
        ngx_memcpy(body, conn->body, len);
    }

    if (conn->close || (conn->http10 && !conn->keepalive)) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "router: token introspection connection %ui done, "
                       "not kept", conn->slot);

        ngx_mail_plus_introspect_close(conn);

    } else {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "router: token introspection connection %ui parked",
                       conn->slot);

        conn->state = ngx_introspect_idle;

        c->read->handler = ngx_mail_plus_introspect_idle;
        c->write->handler = ngx_mail_plus_introspect_idle;
        c->idle = 1;
        ngx_reusable_connection(c, 1);

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->read->cancelable = 1;
        ngx_add_timer(c->read, NGX_MAIL_PLUS_INTROSPECT_IDLE);

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_plus_introspect_close(conn);
        }
    }

    ngx_mail_plus_introspect_dispatch(ip);

    if (body == NULL) {
        ngx_mail_plus_introspect_fail(ip, req, "out of memory");
        return;
    }

    ngx_mail_plus_introspect_response(ip, req, body, len);
}


/*
 * a failure on a connection: it is closed; its request is sent again
 * once if the connection was an old one that failed before its answer
 * began, else it answers TEMPFAIL
 */

static void
ngx_mail_plus_introspect_error(ngx_mail_plus_introspect_conn_t *conn,
    const char *reason)
{
    ngx_uint_t                       retry;
    const char                      *why;
    ngx_connection_t                *c;
    ngx_mail_plus_token_req_t       *req;
    ngx_mail_plus_introspect_t      *ip;
    ngx_mail_plus_introspect_ctx_t  *ctx;

    ip = conn->ip;
    req = conn->req;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                   "router: token introspection connection %ui failed: %s",
                   conn->slot, reason);

    c = conn->peer.connection;

    retry = req && c && !c->read->timedout
            && ((conn->state == ngx_introspect_reading
                 && conn->requests > 1 && !conn->got_byte)
                || (conn->state == ngx_introspect_writing
                    && conn->requests > 0));

    conn->req = NULL;
    ngx_mail_plus_introspect_close(conn);

    if (req == NULL) {
        return;
    }

    ctx = req->ctx;

    if (retry && !ctx->retried && !req->cancelled) {
        ctx->retried = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                       "router: token introspection request sent again on "
                       "connection %ui", conn->slot);

        if (ngx_mail_plus_introspect_start(conn, req, &why) == NGX_OK) {
            return;
        }

        reason = why;
    }

    ngx_mail_plus_introspect_dispatch(ip);

    ngx_mail_plus_introspect_fail(ip, req, reason);
}


/* an idle connection: what happens on it closes it */

static void
ngx_mail_plus_introspect_idle(ngx_event_t *ev)
{
    ngx_connection_t                 *c;
    ngx_mail_plus_introspect_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (ev->write) {
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "router: token introspection connection %ui idle event, "
                   "timedout:%d close:%d", conn->slot, ev->timedout,
                   c->close);

    ngx_mail_plus_introspect_close(conn);

    ngx_mail_plus_introspect_dispatch(conn->ip);
}


static void
ngx_mail_plus_introspect_close(ngx_mail_plus_introspect_conn_t *conn)
{
    ngx_connection_t  *c;

    ngx_mail_plus_introspect_wipe(conn);

    c = conn->peer.connection;

    if (c) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "router: token introspection connection %ui closed",
                       conn->slot);

#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif

        ngx_close_connection(c);
        conn->peer.connection = NULL;
    }

    if (conn->mem) {
        ngx_destroy_pool(conn->mem);
        conn->mem = NULL;
    }

    conn->in = NULL;
    conn->body = NULL;
    conn->state = ngx_introspect_closed;
}


/* the request written holds the token: it goes once sent, or not */

static void
ngx_mail_plus_introspect_wipe(ngx_mail_plus_introspect_conn_t *conn)
{
    if (conn->out) {
        ngx_explicit_memzero(conn->out->start,
                             conn->out->end - conn->out->start);
        conn->out = NULL;
    }
}


/* a step's timer */

static void
ngx_mail_plus_introspect_timer(ngx_mail_plus_introspect_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->peer.connection;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, conn->ip->timeout);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "router: token introspection connection %ui state %ui, "
                   "timer %M ms", conn->slot, (ngx_uint_t) conn->state,
                   conn->ip->timeout);
}


/* the queue's timer: the oldest request waiting's deadline */

static void
ngx_mail_plus_introspect_wait_timer(ngx_mail_plus_introspect_t *ip)
{
    ngx_msec_int_t                   timer;
    ngx_mail_plus_introspect_ctx_t  *ctx;

    if (ngx_queue_empty(&ip->waiting)) {
        if (ip->wait_timer.timer_set) {
            ngx_del_timer(&ip->wait_timer);
        }

        return;
    }

    ctx = ngx_queue_data(ngx_queue_head(&ip->waiting),
                         ngx_mail_plus_introspect_ctx_t, queue);

    timer = (ngx_msec_int_t) (ctx->deadline - ngx_current_msec);

    if (timer < 1) {
        timer = 1;
    }

    ngx_add_timer(&ip->wait_timer, (ngx_msec_t) timer);
}


static void
ngx_mail_plus_introspect_waited(ngx_event_t *ev)
{
    ngx_queue_t                     *q;
    ngx_mail_plus_introspect_t      *ip;
    ngx_mail_plus_introspect_ctx_t  *ctx;

    ip = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ip->log, 0,
                   "router: token introspection queue timer fired, "
                   "%ui waiting", ip->nwaiting);

    while (!ngx_queue_empty(&ip->waiting)) {
        q = ngx_queue_head(&ip->waiting);
        ctx = ngx_queue_data(q, ngx_mail_plus_introspect_ctx_t, queue);

        if ((ngx_msec_int_t) (ctx->deadline - ngx_current_msec) > 0) {
            break;
        }

        ngx_queue_remove(q);
        ip->nwaiting--;

        ngx_mail_plus_introspect_fail(ip, ctx->req,
                                      "timed out waiting for a connection");
    }

    ngx_mail_plus_introspect_wait_timer(ip);
}
