
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_dir_dovecot.h"


/*
 * A connection to one of Dovecot's auth sockets: opened with the
 * handshake in its output, its lines read into a bounded buffer and
 * given one by one to ngx_mail_plus_dovecot_line(), its output flushed
 * as the socket takes it.  One timer, on the read event, bounds the
 * connect and the handshake, then the oldest request sent.  A closed
 * connection answers its requests TEMPFAIL; the next lookup opens it
 * again.
 */


static void ngx_mail_plus_dovecot_read(ngx_event_t *rev);
static void ngx_mail_plus_dovecot_write(ngx_event_t *wev);
static ngx_int_t ngx_mail_plus_dovecot_lines(
    ngx_mail_plus_dovecot_conn_t *conn);
static ngx_uint_t ngx_mail_plus_dovecot_exists(ngx_url_t *url);


ngx_int_t
ngx_mail_plus_dovecot_connect(ngx_mail_plus_dovecot_conn_t *conn)
{
    ngx_int_t                      rc;
    ngx_connection_t              *c;
    ngx_mail_plus_dir_t           *dir;
    ngx_mail_plus_dovecot_pool_t  *pool;

    pool = conn->pool;
    dir = pool->dir;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pool->log, 0,
                   "directory dovecot: \"%V\" connection %ui to %V opened",
                   &dir->name, conn->slot, &pool->url->url);

    if (!ngx_mail_plus_dovecot_exists(pool->url)) {
        ngx_mail_plus_dovecot_close(conn, "no such socket");
        return NGX_ERROR;
    }

    conn->mem = ngx_create_pool(1024, pool->log);
    if (conn->mem == NULL) {
        return NGX_ERROR;
    }

    conn->in = ngx_create_temp_buf(conn->mem, NGX_MAIL_PLUS_DOVECOT_LINE);
    conn->out = ngx_create_temp_buf(conn->mem, NGX_MAIL_PLUS_DOVECOT_OUT);

    if (conn->in == NULL || conn->out == NULL) {
        ngx_destroy_pool(conn->mem);
        conn->mem = NULL;
        return NGX_ERROR;
    }

    /* the handshake: CPID, unique to the connection, only for the client */

    if (pool->master) {
        conn->out->last = ngx_cpymem(conn->out->last, "VERSION\t1\t0\n",
                                     sizeof("VERSION\t1\t0\n") - 1);

    } else {
        pool->cpid = 0x80000000
                     | ((uint32_t) (ngx_pid & 0x1fffff) << 10)
                     | ((pool->cpid + 1) & 0x3ff);

        conn->out->last = ngx_sprintf(conn->out->last,
                                      "VERSION\t1\t2\nCPID\t%uD\n",
                                      pool->cpid);
    }

    conn->version = 0;
    conn->plain = 0;
    conn->generation++;

    ngx_memzero(&conn->peer, sizeof(ngx_peer_connection_t));

    conn->peer.sockaddr = pool->url->addrs[0].sockaddr;
    conn->peer.socklen = pool->url->addrs[0].socklen;
    conn->peer.name = &pool->url->url;
    conn->peer.get = ngx_event_get_peer;
    conn->peer.log = pool->log;
    conn->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&conn->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (conn->peer.connection) {
            ngx_close_connection(conn->peer.connection);
            conn->peer.connection = NULL;
        }

        ngx_mail_plus_dovecot_close(conn, "connect failed");
        return NGX_ERROR;
    }

    c = conn->peer.connection;

    c->data = conn;
    c->pool = conn->mem;
    c->log = pool->log;
    c->read->log = pool->log;
    c->write->log = pool->log;
    c->read->handler = ngx_mail_plus_dovecot_read;
    c->write->handler = ngx_mail_plus_dovecot_write;

    conn->state = (rc == NGX_AGAIN) ? NGX_MAIL_PLUS_DOVECOT_CONNECTING
                                    : NGX_MAIL_PLUS_DOVECOT_HANDSHAKE;

    ngx_add_timer(c->read, dir->timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pool->log, 0,
                   "directory dovecot: connection %ui connect: %i, timer set",
                   conn->slot, rc);

    if (rc == NGX_OK) {
        return ngx_mail_plus_dovecot_flush(conn);
    }

    return NGX_OK;
}


/* a unix socket that does not exist is not connected to */

static ngx_uint_t
ngx_mail_plus_dovecot_exists(ngx_url_t *url)
{
#if (NGX_HAVE_UNIX_DOMAIN)
    ngx_file_info_t      fi;
    struct sockaddr_un  *sun;

    if (url->addrs[0].sockaddr->sa_family != AF_UNIX) {
        return 1;
    }

    sun = (struct sockaddr_un *) url->addrs[0].sockaddr;

    if (ngx_file_info(sun->sun_path, &fi) == NGX_FILE_ERROR) {
        return 0;
    }
#endif

    return 1;
}


/* the output, as much as the socket takes: NGX_OK, or NGX_ERROR (closed) */

ngx_int_t
ngx_mail_plus_dovecot_flush(ngx_mail_plus_dovecot_conn_t *conn)
{
    size_t             len;
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = conn->peer.connection;
    b = conn->out;

    if (b->pos == b->last) {
        return NGX_OK;
    }

    while (b->pos < b->last) {

        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_mail_plus_dovecot_close(conn, "event error");
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        if (n == NGX_ERROR) {
            ngx_mail_plus_dovecot_close(conn, "the connection failed");
            return NGX_ERROR;
        }

        b->pos += n;
    }

    /* what was sent holds passwords: it goes */

    len = b->last - b->start;
    ngx_explicit_memzero(b->start, len);
    b->pos = b->start;
    b->last = b->start;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "directory dovecot: connection %ui flushed", conn->slot);

    return NGX_OK;
}


static void
ngx_mail_plus_dovecot_write(ngx_event_t *wev)
{
    ngx_connection_t              *c;
    ngx_mail_plus_dovecot_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    if (conn->state == NGX_MAIL_PLUS_DOVECOT_CONNECTING) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "directory dovecot: connection %ui connected",
                       conn->slot);

        conn->state = NGX_MAIL_PLUS_DOVECOT_HANDSHAKE;
    }

    (void) ngx_mail_plus_dovecot_flush(conn);
}


static void
ngx_mail_plus_dovecot_read(ngx_event_t *rev)
{
    ssize_t                        n;
    ngx_buf_t                     *b;
    ngx_connection_t              *c;
    ngx_mail_plus_dovecot_conn_t  *conn;

    c = rev->data;
    conn = c->data;
    b = conn->in;

    if (rev->timedout) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "directory dovecot: connection %ui timer fired",
                       conn->slot);

        ngx_mail_plus_dovecot_close(conn,
                              conn->state == NGX_MAIL_PLUS_DOVECOT_READY
                              ? "timed out waiting for a reply"
                              : conn->state == NGX_MAIL_PLUS_DOVECOT_CONNECTING
                              ? "timed out connecting"
                              : "timed out in the handshake");
        return;
    }

    if (conn->state == NGX_MAIL_PLUS_DOVECOT_CONNECTING) {
        conn->state = NGX_MAIL_PLUS_DOVECOT_HANDSHAKE;
    }

    for ( ;; ) {

        if (b->last == b->end) {
            ngx_mail_plus_dovecot_close(conn, "a line too long");
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_mail_plus_dovecot_close(conn,
                                        conn->nrequests
                                        || conn->state
                                           != NGX_MAIL_PLUS_DOVECOT_READY
                                        ? "the connection was closed" : NULL);
            return;
        }

        b->last += n;

        if (ngx_mail_plus_dovecot_lines(conn) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_plus_dovecot_close(conn, "event error");
    }
}


/* the complete lines read: NGX_OK, or NGX_ERROR (closed) */

static ngx_int_t
ngx_mail_plus_dovecot_lines(ngx_mail_plus_dovecot_conn_t *conn)
{
    u_char      *p, *lf;
    ngx_buf_t   *b;
    ngx_uint_t   generation;

    b = conn->in;
    generation = conn->generation;

    for ( ;; ) {
        lf = ngx_strlchr(b->pos, b->last, LF);

        if (lf == NULL) {
            break;
        }

        p = b->pos;
        b->pos = lf + 1;

        if (ngx_mail_plus_dovecot_line(conn, p, lf - p) != NGX_OK) {
            ngx_mail_plus_dovecot_close(conn, "a protocol error");
            return NGX_ERROR;
        }

        /* closed, and maybe opened again, by what the line did */

        if (conn->state == NGX_MAIL_PLUS_DOVECOT_CLOSED
            || conn->generation != generation)
        {
            return NGX_ERROR;
        }
    }

    /* the lines read may hold passwords ("pass="): they go */

    ngx_explicit_memzero(b->start, b->pos - b->start);

    /* what is left of a line goes to the start */

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;

    } else if (b->pos != b->start) {
        b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
        b->pos = b->start;
    }

    return NGX_OK;
}


/* the timer: the oldest request's deadline, or none */

void
ngx_mail_plus_dovecot_timer(ngx_mail_plus_dovecot_conn_t *conn)
{
    ngx_msec_int_t                timer;
    ngx_connection_t             *c;
    ngx_mail_plus_dir_req_t      *req;
    ngx_mail_plus_dovecot_req_t  *dr;

    c = conn->peer.connection;

    if (conn->nrequests == 0) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        return;
    }

    req = ngx_queue_data(ngx_queue_head(&conn->requests),
                         ngx_mail_plus_dir_req_t, queue);
    dr = req->ctx;

    timer = (ngx_msec_int_t) (dr->deadline - ngx_current_msec);

    if (timer < 1) {
        timer = 1;
    }

    ngx_add_timer(c->read, (ngx_msec_t) timer);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "directory dovecot: connection %ui timer set, %M ms",
                   conn->slot, (ngx_msec_t) timer);
}


/*
 * closes a connection; its requests answer TEMPFAIL.  With a reason, a
 * failure: the directory is reported down, and, if no other connection
 * can take them, the requests waiting answer TEMPFAIL too.
 */

void
ngx_mail_plus_dovecot_close(ngx_mail_plus_dovecot_conn_t *conn, char *reason)
{
    ngx_str_t                      why;
    ngx_uint_t                     i, others;
    ngx_queue_t                   *q;
    ngx_mail_plus_dir_t           *dir;
    ngx_mail_plus_dir_req_t       *req;
    ngx_mail_plus_dovecot_pool_t  *pool;

    pool = conn->pool;
    dir = pool->dir;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pool->log, 0,
                   "directory dovecot: \"%V\" connection %ui closed: %s",
                   &dir->name, conn->slot, reason ? reason : "idle");

    if (conn->peer.connection) {
        ngx_close_connection(conn->peer.connection);
        conn->peer.connection = NULL;
    }

    if (conn->mem) {
        if (conn->out) {
            ngx_explicit_memzero(conn->out->start,
                                 conn->out->end - conn->out->start);
        }

        ngx_destroy_pool(conn->mem);
        conn->mem = NULL;
    }

    conn->in = NULL;
    conn->out = NULL;
    conn->state = NGX_MAIL_PLUS_DOVECOT_CLOSED;

    while (!ngx_queue_empty(&conn->requests)) {
        q = ngx_queue_head(&conn->requests);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);

        ngx_mail_plus_dovecot_answer(pool, req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                     reason ? reason
                                            : "the connection was closed");
    }

    conn->nrequests = 0;

    if (reason == NULL) {
        return;
    }

    why.data = (u_char *) reason;
    why.len = ngx_strlen(reason);

    ngx_mail_plus_dir_state(dir, 0, &why, pool->log);

    others = 0;

    for (i = 0; i < dir->connections; i++) {
        if (pool->conns[i].state != NGX_MAIL_PLUS_DOVECOT_CLOSED) {
            others = 1;
            break;
        }
    }

    if (others) {
        return;
    }

    while (!ngx_queue_empty(&pool->waiting)) {
        q = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_mail_plus_dir_req_t, queue);

        ngx_mail_plus_dovecot_answer(pool, req, NGX_MAIL_PLUS_DIR_TEMPFAIL,
                                     reason);
    }

    pool->nwaiting = 0;
}
