
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * The SMTP/LMTP client of the delivery: one connection to one destination,
 * an explicit state machine in nginx's event loop.  It greets with EHLO
 * (LHLO), authenticates to a relay with AUTH PLAIN, then runs transactions:
 * [RSET] MAIL FROM (SIZE, BODY, SMTPUTF8), RCPT TO per recipient, DATA,
 * pipelined when the peer offers PIPELINING; the content is read from the
 * spool file in chunks and dot-stuffed on the way.  LMTP answers once per
 * accepted recipient after the content.  RSET goes first only when the
 * connection's previous transaction did not end with the reply to its
 * content.  With PIPELINING, the destination's next job is asked for when
 * the end of data is written, and its MAIL and RCPTs (and DATA) follow at
 * once: the replies are read in order, the current job's first.  The
 * client makes no scheduling
 * decision: it is started, given its next job and closed by the scheduler
 * (ngx_mail_plus_destination.c), and tells it through conn.done when a
 * transaction is over; the recipients' results go to the runner.
 */


#define NGX_MAIL_PLUS_CLIENT_BUF     (64 * 1024)
#define NGX_MAIL_PLUS_CLIENT_CHUNK   (16 * 1024)
#define NGX_MAIL_PLUS_CLIENT_IN      4096
#define NGX_MAIL_PLUS_CLIENT_TEXT    256


typedef enum {
    ngx_mail_plus_client_st_greeting = 0,
    ngx_mail_plus_client_st_ehlo,
    ngx_mail_plus_client_st_starttls,
    ngx_mail_plus_client_st_auth,
    ngx_mail_plus_client_st_trans,
    ngx_mail_plus_client_st_body,
    ngx_mail_plus_client_st_dot,
    ngx_mail_plus_client_st_idle
} ngx_mail_plus_client_state_e;


struct ngx_mail_plus_client_s {
    ngx_pool_t                     *pool;
    ngx_log_t                       log;
    ngx_peer_connection_t           peer;
    ngx_mail_plus_delivery_conf_t  *dcf;
    ngx_mail_plus_conn_t            conn;      /* the scheduler's part */

    ngx_buf_t                      *in;
    ngx_buf_t                      *out;
    ngx_mail_plus_queue_reader_t   *reader;   /* of the spool file */

    ngx_uint_t                      state;
    ngx_uint_t                      base;      /* 1 with RSET first */
    ngx_uint_t                      ncmds;
    ngx_uint_t                      cmd;       /* commands sent */
    ngx_uint_t                      reply;     /* replies read */
    ngx_uint_t                      accepted;
    ngx_uint_t                      ok[NGX_MAIL_PLUS_JOB_RCPTS];
    off_t                           offset;    /* of the content, sent */

    ngx_uint_t                      code;
    u_char                          text[NGX_MAIL_PLUS_CLIENT_TEXT];
    ngx_str_t                       reply_text;

    unsigned                        multi:1;   /* inside a reply */
    unsigned                        pipelining:1;
    unsigned                        size:1;
    unsigned                        eightbit:1;
    unsigned                        smtputf8:1;
    unsigned                        starttls:1;
    unsigned                        chunking:1;
    unsigned                        dsn:1;
    unsigned                        bdat:1;    /* BDAT, not DATA */
    unsigned                        sending:1; /* the content */
    unsigned                        mail_failed:1;
    unsigned                        bol:1;     /* at the start of a line */
    unsigned                        greeted:1;
    unsigned                        reading:1; /* a read in the thread */
    unsigned                        reused:1;  /* an earlier transaction */
    unsigned                        clean:1;   /* it ended with its data */
    unsigned                        eod:1;     /* the end of data written */
};


static ngx_int_t ngx_mail_plus_client_refused(ngx_mail_plus_client_t *cl);
static void ngx_mail_plus_client_connected(ngx_mail_plus_client_t *cl);
static void ngx_mail_plus_client_read_handler(ngx_event_t *rev);
static void ngx_mail_plus_client_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_mail_plus_client_line(ngx_mail_plus_client_t *cl,
    u_char *p, u_char *last);
static ngx_int_t ngx_mail_plus_client_process(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_ehlo_done(ngx_mail_plus_client_t *cl);
#if (NGX_MAIL_SSL)
static ngx_int_t ngx_mail_plus_client_tls(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_tls_name(ngx_mail_plus_client_t *cl);
static void ngx_mail_plus_client_tls_handshake(ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_client_tls_verify(ngx_mail_plus_client_t *cl);
#endif
static void ngx_mail_plus_client_begin(ngx_mail_plus_client_t *cl,
    ngx_uint_t rset);
static ngx_int_t ngx_mail_plus_client_trans(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_commands(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_write(ngx_mail_plus_client_t *cl);
static void ngx_mail_plus_client_ahead(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_dot(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_send(ngx_mail_plus_client_t *cl);
static ngx_int_t ngx_mail_plus_client_fill(ngx_mail_plus_client_t *cl);
static void ngx_mail_plus_client_read_done(void *data, u_char *buf,
    ssize_t n, ngx_err_t err);
static void ngx_mail_plus_client_fill_end(ngx_mail_plus_client_t *cl);
static void ngx_mail_plus_client_accepted(ngx_mail_plus_client_t *cl,
    ngx_uint_t code, ngx_str_t *text);
static void ngx_mail_plus_client_result(ngx_mail_plus_client_t *cl,
    ngx_uint_t i, ngx_uint_t code, ngx_str_t *text, ngx_uint_t remote);
static void ngx_mail_plus_client_fail(ngx_mail_plus_client_t *cl,
    char *reason);
static ngx_int_t ngx_mail_plus_client_end(ngx_mail_plus_client_t *cl,
    ngx_uint_t keep);
static void ngx_mail_plus_client_finish(ngx_mail_plus_client_t *cl,
    ngx_uint_t keep);


/*
 * a connection to the destination for the job; NULL: it could not be
 * opened, and the job has no result yet
 */

ngx_mail_plus_conn_t *
ngx_mail_plus_client_start(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_dest_t *dest, ngx_mail_plus_job_t *job,
    ngx_mail_plus_conn_done_pt done)
{
    ngx_int_t                rc;
    ngx_pool_t              *pool;
    ngx_connection_t        *c;
    ngx_mail_plus_client_t  *cl;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    cl = ngx_pcalloc(pool, sizeof(ngx_mail_plus_client_t));
    if (cl == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    cl->pool = pool;
    cl->dcf = dcf;
    cl->conn.client = cl;
    cl->conn.dest = dest;
    cl->conn.job = job;
    cl->conn.done = done;

    cl->in = ngx_create_temp_buf(pool, NGX_MAIL_PLUS_CLIENT_IN);
    cl->out = ngx_create_temp_buf(pool, NGX_MAIL_PLUS_CLIENT_BUF);

    if (cl->in == NULL || cl->out == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    cl->peer.sockaddr = dest->sockaddr;
    cl->peer.socklen = dest->socklen;
    cl->peer.name = &dest->name;
    cl->peer.get = ngx_event_get_peer;
    cl->log = *ngx_cycle->log;
    cl->log.action = "delivering mail";
    cl->log.handler = NULL;
    cl->log.data = NULL;

    cl->peer.log = &cl->log;
    cl->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&cl->peer);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, &cl->log, 0,
                   "delivery client: connect to %V for %s: %i",
                   &dest->name, job->msg->id, rc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (cl->peer.connection) {
            ngx_close_connection(cl->peer.connection);
        }

        ngx_destroy_pool(pool);

        if (dest->server) {
            ngx_mail_plus_health_report(dest->server, dest->protocol, 0,
                                        ngx_cycle->log);
        }

        return NULL;
    }

    c = cl->peer.connection;
    c->data = cl;
    c->pool = pool;

    cl->conn.connection = c;

    c->read->handler = ngx_mail_plus_client_read_handler;
    c->write->handler = ngx_mail_plus_client_write_handler;

    cl->state = ngx_mail_plus_client_st_greeting;

    /* the connection and the greeting */

    ngx_add_timer(c->read, dcf->connect_timeout);

    if (rc == NGX_OK && c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return &cl->conn;
}


/*
 * the connection takes the scheduler's next job, with RSET first unless
 * the previous transaction ended with the reply to its content
 */

void
ngx_mail_plus_client_next(ngx_mail_plus_client_t *cl,
    ngx_mail_plus_job_t *job)
{
    ngx_connection_t  *c;

    c = cl->peer.connection;

    c->data = cl;
    c->idle = 0;
    c->read->handler = ngx_mail_plus_client_read_handler;
    c->write->handler = ngx_mail_plus_client_write_handler;
    c->read->cancelable = 0;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    cl->conn.job = job;
    cl->reused = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: next transaction to %V for %s, %s",
                   &cl->conn.dest->name, job->msg->id,
                   cl->clean ? "no RSET, previous transaction complete"
                             : "RSET first");

    ngx_mail_plus_client_begin(cl, !cl->clean);

    (void) ngx_mail_plus_client_commands(cl);
}


static void
ngx_mail_plus_client_read_handler(ngx_event_t *rev)
{
    u_char                  *p;
    ssize_t                  n;
    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_mail_plus_client_t  *cl;

    c = rev->data;
    cl = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "delivery to %V timed out", &cl->conn.dest->name);
        ngx_mail_plus_client_fail(cl, "4.4.2 timed out waiting for the "
                                      "destination");
        return;
    }

    for ( ;; ) {

        if (cl->in->last == cl->in->end) {

            /* a line longer than the buffer: the peer is broken */

            if (cl->in->pos == cl->in->start) {
                ngx_mail_plus_client_fail(cl, "4.5.0 reply line too long");
                return;
            }

            cl->in->last = ngx_movemem(cl->in->start, cl->in->pos,
                                       cl->in->last - cl->in->pos);
            cl->in->pos = cl->in->start;
        }

        n = c->recv(c, cl->in->last, cl->in->end - cl->in->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            if (cl->state == ngx_mail_plus_client_st_greeting && !cl->greeted
                && cl->conn.dest->server)
            {
                ngx_mail_plus_health_report(cl->conn.dest->server,
                                            cl->conn.dest->protocol, 0, c->log);
            }

            ngx_mail_plus_client_fail(cl, cl->greeted
                                      ? "4.4.2 connection lost"
                                      : "4.4.1 connect to the destination "
                                        "failed");
            return;
        }

        cl->in->last += n;

        for ( ;; ) {
            p = ngx_strlchr(cl->in->pos, cl->in->last, LF);

            if (p == NULL) {
                break;
            }

            rc = ngx_mail_plus_client_line(cl, cl->in->pos, p);

            cl->in->pos = p + 1;

            if (rc == NGX_AGAIN) {
                continue;
            }

            if (rc == NGX_ERROR) {
                ngx_mail_plus_client_fail(cl, "4.5.0 invalid reply");
                return;
            }

            /* a whole reply */

            if (ngx_mail_plus_client_process(cl) != NGX_OK) {
                return;
            }
        }

        if (cl->in->pos == cl->in->last) {
            cl->in->pos = cl->in->start;
            cl->in->last = cl->in->start;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_mail_plus_client_fail(cl, "4.3.0 internal error");
    }
}


/*
 * one line of a reply: NGX_AGAIN more lines follow, NGX_OK the reply is
 * whole; the first line's text is kept, EHLO keywords are noted
 */

static ngx_int_t
ngx_mail_plus_client_line(ngx_mail_plus_client_t *cl, u_char *p,
    u_char *last)
{
    u_char      *k;
    size_t       len;
    ngx_uint_t   code;

    if (last > p && last[-1] == CR) {
        last--;
    }

    if (last - p < 3
        || p[0] < '1' || p[0] > '5'
        || p[1] < '0' || p[1] > '9'
        || p[2] < '0' || p[2] > '9'
        || (last - p > 3 && p[3] != ' ' && p[3] != '-'))
    {
        return NGX_ERROR;
    }

    code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');

    if (!cl->multi) {
        cl->code = code;

        len = ngx_min((size_t) (last - p), NGX_MAIL_PLUS_CLIENT_TEXT);
        ngx_memcpy(cl->text, p, len);

        cl->reply_text.data = cl->text;
        cl->reply_text.len = len;
    }

    if (cl->state == ngx_mail_plus_client_st_ehlo && code == 250
        && last - p > 4)
    {
        k = p + 4;
        len = last - k;

        if (len >= 10 && ngx_strncasecmp(k, (u_char *) "PIPELINING", 10)
                         == 0)
        {
            cl->pipelining = 1;

        } else if (len >= 4 && ngx_strncasecmp(k, (u_char *) "SIZE", 4) == 0
                   && (len == 4 || k[4] == ' '))
        {
            cl->size = 1;

        } else if (len >= 8
                   && ngx_strncasecmp(k, (u_char *) "8BITMIME", 8) == 0)
        {
            cl->eightbit = 1;

        } else if (len >= 8
                   && ngx_strncasecmp(k, (u_char *) "SMTPUTF8", 8) == 0)
        {
            cl->smtputf8 = 1;

        } else if (len == 8
                   && ngx_strncasecmp(k, (u_char *) "STARTTLS", 8) == 0)
        {
            cl->starttls = 1;

        } else if (len == 8
                   && ngx_strncasecmp(k, (u_char *) "CHUNKING", 8) == 0)
        {
            cl->chunking = 1;

        } else if (len == 3
                   && ngx_strncasecmp(k, (u_char *) "DSN", 3) == 0)
        {
            cl->dsn = 1;
        }
    }

    if (last - p > 3 && p[3] == '-') {
        cl->multi = 1;
        return NGX_AGAIN;
    }

    cl->multi = 0;

    return NGX_OK;
}


/* a whole reply in the current state; not NGX_OK: the client is gone */

static ngx_int_t
ngx_mail_plus_client_process(ngx_mail_plus_client_t *cl)
{
    u_char             buf[4 * NGX_MAIL_PLUS_CLIENT_TEXT];
    ngx_str_t          logged;
    ngx_uint_t         lmtp;
    ngx_connection_t  *c;

    c = cl->peer.connection;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: reply %ui from %V in state %ui",
                   cl->code, &cl->conn.dest->name, cl->state);

    switch (cl->state) {

    case ngx_mail_plus_client_st_greeting:

        cl->greeted = 1;

        if (cl->code != 220) {
            return ngx_mail_plus_client_refused(cl);
        }

        if (cl->conn.dest->server) {
            ngx_mail_plus_health_report(cl->conn.dest->server,
                                        cl->conn.dest->protocol, 1, c->log);
        }

        ngx_mail_plus_client_connected(cl);

        cl->state = ngx_mail_plus_client_st_ehlo;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ngx_add_timer(c->read, cl->dcf->helo_timeout);

        lmtp = (cl->conn.dest->protocol == NGX_MAIL_PLUS_LMTP);

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "delivery client: send %s", lmtp ? "LHLO" : "EHLO");

        cl->out->last = ngx_sprintf(cl->out->last, "%s %V" CRLF,
                                    lmtp ? "LHLO" : "EHLO",
                                    &cl->dcf->helo_name);

        return ngx_mail_plus_client_send(cl);

    case ngx_mail_plus_client_st_ehlo:

        if (cl->code != 250) {
            return ngx_mail_plus_client_refused(cl);
        }

        return ngx_mail_plus_client_ehlo_done(cl);

#if (NGX_MAIL_SSL)

    case ngx_mail_plus_client_st_starttls:

        if (cl->code != 220) {
            return ngx_mail_plus_client_refused(cl);
        }

        return ngx_mail_plus_client_tls(cl);

#endif

    case ngx_mail_plus_client_st_auth:

        if (cl->code != 235) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "delivery: AUTH to %V failed: \"%V\"",
                          &cl->conn.dest->name, &cl->reply_text);

            /* a wrong password is the operator's to fix: deferred */

            return ngx_mail_plus_client_refused(cl);
        }

        ngx_mail_plus_client_begin(cl, 0);

        return ngx_mail_plus_client_commands(cl);

    case ngx_mail_plus_client_st_trans:
        return ngx_mail_plus_client_trans(cl);

    case ngx_mail_plus_client_st_dot:
        return ngx_mail_plus_client_dot(cl);

    default: /* body, idle: the peer speaks out of turn */

        logged.data = buf;
        logged.len = ngx_mail_plus_text_log_write(buf, buf + sizeof(buf),
                                                  &cl->reply_text)
                     - buf;

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "delivery: unexpected reply from %V: \"%V\"",
                      &cl->conn.dest->name, &logged);

        ngx_mail_plus_client_fail(cl, "4.5.0 unexpected reply");

        return NGX_DONE;
    }
}


/*
 * the greeting, EHLO, STARTTLS or AUTH refused: the session is of no use,
 * the recipients are deferred whatever the code (a setup problem)
 */

static ngx_int_t
ngx_mail_plus_client_refused(ngx_mail_plus_client_t *cl)
{
    ngx_mail_plus_client_result(cl, NGX_MAIL_PLUS_JOB_ALL,
                                cl->code >= 500 ? 451 : cl->code,
                                &cl->reply_text, 0);
    ngx_mail_plus_client_finish(cl, 0);

    return NGX_DONE;
}


static void
ngx_mail_plus_client_connected(ngx_mail_plus_client_t *cl)
{
    int                tcp_nodelay;
    ngx_connection_t  *c;

    c = cl->peer.connection;

    tcp_nodelay = 1;

    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY,
                   (const void *) &tcp_nodelay, sizeof(int))
        == -1)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, ngx_socket_errno,
                      "setsockopt(TCP_NODELAY) failed");
    }
}


static ngx_int_t
ngx_mail_plus_client_ehlo_done(ngx_mail_plus_client_t *cl)
{
    ngx_str_t          text;
    ngx_connection_t  *c;

    c = cl->peer.connection;

#if (NGX_MAIL_SSL)

    if (c->ssl == NULL && cl->starttls
        && cl->conn.dest->tls != NGX_MAIL_PLUS_TLS_OFF)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "delivery client: send STARTTLS");

        cl->state = ngx_mail_plus_client_st_starttls;
        cl->out->last = ngx_cpymem(cl->out->last, "STARTTLS" CRLF, 10);

        return ngx_mail_plus_client_send(cl);
    }

#endif

    if (c->ssl == NULL && cl->conn.dest->tls >= NGX_MAIL_PLUS_TLS_REQUIRED) {
        ngx_str_set(&text, "4.7.4 TLS is required, but was not offered");
        ngx_mail_plus_client_result(cl, NGX_MAIL_PLUS_JOB_ALL, 451, &text, 0);
        ngx_mail_plus_client_finish(cl, 0);
        return NGX_DONE;
    }

    if (cl->conn.dest->auth.len) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "delivery client: send AUTH PLAIN");

        cl->state = ngx_mail_plus_client_st_auth;

        cl->out->last = ngx_sprintf(cl->out->last, "AUTH PLAIN %V" CRLF,
                                    &cl->conn.dest->auth);

        return ngx_mail_plus_client_send(cl);
    }

    ngx_mail_plus_client_begin(cl, 0);

    return ngx_mail_plus_client_commands(cl);
}


#if (NGX_MAIL_SSL)

static ngx_int_t
ngx_mail_plus_client_tls(ngx_mail_plus_client_t *cl)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = cl->peer.connection;

    if (ngx_ssl_create_connection(cl->dcf->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_mail_plus_client_fail(cl, "4.7.5 TLS setup failed");
        return NGX_DONE;
    }

    if (ngx_mail_plus_client_tls_name(cl) != NGX_OK) {
        ngx_mail_plus_client_fail(cl, "4.7.5 TLS setup failed");
        return NGX_DONE;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: TLS handshake with %V",
                   &cl->conn.dest->name);

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ngx_add_timer(c->read, cl->dcf->helo_timeout);

        c->ssl->handler = ngx_mail_plus_client_tls_handshake;

        return NGX_DONE;
    }

    ngx_mail_plus_client_tls_handshake(c);

    return NGX_DONE;
}


/* SNI: the destination's host name; RFC 6066 allows no IP literals */

static ngx_int_t
ngx_mail_plus_client_tls_name(ngx_mail_plus_client_t *cl)
{
#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME

    ngx_str_t         *name;
    ngx_connection_t  *c;

    c = cl->peer.connection;
    name = &cl->conn.dest->tls_name;

    if (name->len == 0 || name->data[0] == '['
        || ngx_strlchr(name->data, name->data + name->len, ':')
        || ngx_inet_addr(name->data, name->len) != INADDR_NONE)
    {
        return NGX_OK;
    }

    if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) name->data)
        == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_set_tlsext_host_name(\"%V\") failed", name);
        return NGX_ERROR;
    }

#endif

    return NGX_OK;
}


static void
ngx_mail_plus_client_tls_handshake(ngx_connection_t *c)
{
    ngx_mail_plus_client_t  *cl;

    cl = c->data;

    if (!c->ssl->handshaked) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "delivery: TLS handshake with %V failed",
                      &cl->conn.dest->name);
        ngx_mail_plus_client_fail(cl, "4.7.5 TLS handshake failed");
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: TLS with %V done, verify:%d",
                   &cl->conn.dest->name,
                   cl->conn.dest->tls == NGX_MAIL_PLUS_TLS_VERIFY);

    if (cl->conn.dest->tls == NGX_MAIL_PLUS_TLS_VERIFY
        && ngx_mail_plus_client_tls_verify(cl) != NGX_OK)
    {
        return;
    }

    c->read->handler = ngx_mail_plus_client_read_handler;
    c->write->handler = ngx_mail_plus_client_write_handler;

    /* RFC 3207 4.2: what was learned before TLS is forgotten */

    cl->pipelining = 0;
    cl->size = 0;
    cl->eightbit = 0;
    cl->smtputf8 = 0;
    cl->starttls = 0;
    cl->chunking = 0;
    cl->dsn = 0;
    cl->in->pos = cl->in->start;
    cl->in->last = cl->in->start;

    cl->state = ngx_mail_plus_client_st_ehlo;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, cl->dcf->helo_timeout);

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: send EHLO after STARTTLS");

    cl->out->last = ngx_sprintf(cl->out->last, "EHLO %V" CRLF,
                                &cl->dcf->helo_name);

    (void) ngx_mail_plus_client_send(cl);
}


/*
 * "starttls=verify": the chain up to a trusted certificate and the name;
 * a failure defers the recipients with the reason in their log lines
 */

static ngx_int_t
ngx_mail_plus_client_tls_verify(ngx_mail_plus_client_t *cl)
{
    long               rc;
    u_char            *p, reason[NGX_MAIL_PLUS_CLIENT_TEXT];
    ngx_connection_t  *c;

    c = cl->peer.connection;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "delivery: certificate of %V (\"%V\") does not "
                      "verify: (%l:%s)", &cl->conn.dest->name,
                      &cl->conn.dest->tls_name, rc,
                      X509_verify_cert_error_string(rc));

        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "4.7.5 certificate verify failed: (%l:%s)",
                         rc, X509_verify_cert_error_string(rc));
        goto failed;
    }

    if (ngx_ssl_check_host(c, &cl->conn.dest->tls_name) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "delivery: certificate of %V does not match \"%V\"",
                      &cl->conn.dest->name, &cl->conn.dest->tls_name);

        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "4.7.5 certificate name mismatch: %V",
                         &cl->conn.dest->tls_name);
        goto failed;
    }

    return NGX_OK;

failed:

    *p = '\0';

    ngx_mail_plus_client_fail(cl, (char *) reason);

    return NGX_ERROR;
}

#endif


static void
ngx_mail_plus_client_begin(ngx_mail_plus_client_t *cl, ngx_uint_t rset)
{
    cl->state = ngx_mail_plus_client_st_trans;
    cl->base = rset ? 1 : 0;
    cl->ncmds = cl->base + 1 + cl->conn.job->nrcpts + 1;
    cl->cmd = 0;
    cl->reply = 0;
    cl->accepted = 0;
    cl->offset = 0;
    cl->mail_failed = 0;
    cl->bdat = 0;
    cl->sending = 0;
    cl->bol = 1;
    cl->clean = 0;
    cl->eod = 0;

    if (cl->peer.connection->read->timer_set) {
        ngx_del_timer(cl->peer.connection->read);
    }

    ngx_add_timer(cl->peer.connection->read, cl->dcf->command_timeout);
}


/*
 * the commands of a transaction: all at once with PIPELINING; with
 * CHUNKING the content follows "BDAT size LAST" at once
 */

static ngx_int_t
ngx_mail_plus_client_commands(ngx_mail_plus_client_t *cl)
{
    if (ngx_mail_plus_client_write(cl) != NGX_OK) {
        return NGX_DONE;
    }

    return ngx_mail_plus_client_send(cl);
}


/*
 * the commands that fit are put in the buffer, for the job being written:
 * the one pipelined after the current one if any, whose BDAT waits for
 * the current one's last reply (its content is not read before)
 */

static ngx_int_t
ngx_mail_plus_client_write(ngx_mail_plus_client_t *cl)
{
    u_char                *p;
    ngx_uint_t             k, i, ncmds;
    ngx_mail_plus_job_t   *job;
    ngx_mail_plus_rcpt_t  *rcpt;
    ngx_mail_plus_dmsg_t  *msg;

    job = cl->conn.next ? cl->conn.next : cl->conn.job;
    msg = job->msg;
    rcpt = msg->rcpts.elts;

    ncmds = cl->ncmds;

    if (cl->conn.next && cl->chunking) {
        ncmds--;
    }

    while (cl->cmd < ncmds
           && (cl->pipelining || cl->cmd == cl->reply)
           && cl->out->end - cl->out->last >= 2048)
    {

        k = cl->cmd;
        p = cl->out->last;

        if (k < cl->base) {
            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, cl->peer.connection->log, 0,
                           "delivery client: send RSET");

            p = ngx_cpymem(p, "RSET" CRLF, 6);

        } else if (k == cl->base) {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, cl->peer.connection->log, 0,
                           "delivery client: send MAIL FROM:<%V> of %s",
                           &msg->sender, msg->id);

            p = ngx_sprintf(p, "MAIL FROM:<%V>", &msg->sender);

            if (cl->size) {
                p = ngx_sprintf(p, " SIZE=%O", msg->size);
            }

            if (cl->eightbit) {
                p = ngx_sprintf(p, " BODY=%s",
                                msg->body_type == NGX_MAIL_PLUS_BODY_8BITMIME
                                ? "8BITMIME" : "7BIT");
            }

            if (cl->smtputf8 && msg->smtputf8) {
                p = ngx_cpymem(p, " SMTPUTF8", 9);
            }

            /* RFC 3461 passed on to a next hop that knows it */

            if (cl->dsn && msg->ret.len) {
                p = ngx_sprintf(p, " RET=%V", &msg->ret);
            }

            if (cl->dsn && msg->envid.len) {
                p = ngx_sprintf(p, " ENVID=%V", &msg->envid);
            }

            *p++ = CR; *p++ = LF;

        } else if (k <= cl->base + job->nrcpts) {
            i = job->rcpts[k - cl->base - 1];

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, cl->peer.connection->log, 0,
                           "delivery client: send RCPT TO:<%V>",
                           &rcpt[i].login);

            p = ngx_sprintf(p, "RCPT TO:<%V>", &rcpt[i].login);

            /* a next hop with DSN reports the delivery itself */

            rcpt[i].passed = cl->dsn;

            if (cl->dsn && rcpt[i].notify.len) {
                p = ngx_sprintf(p, " NOTIFY=%V", &rcpt[i].notify);
            }

            if (cl->dsn && rcpt[i].orcpt.len) {
                p = ngx_sprintf(p, " ORCPT=%V", &rcpt[i].orcpt);
            }

            *p++ = CR; *p++ = LF;

        } else {

            /* without PIPELINING, no DATA when no recipient was taken */

            if (!cl->pipelining && (cl->accepted == 0 || cl->mail_failed)) {
                ngx_mail_plus_client_finish(cl, 1);
                return NGX_DONE;
            }

            /* "cl->bdat" and "sending" are the job's being written */

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, cl->peer.connection->log, 0,
                           "delivery client: send %s",
                           cl->chunking ? "BDAT LAST" : "DATA");

            if (cl->chunking) {
                p = ngx_sprintf(p, "BDAT %O LAST" CRLF, msg->size);
                cl->bdat = 1;
                cl->sending = 1;

            } else {
                p = ngx_cpymem(p, "DATA" CRLF, 6);
            }
        }

        cl->out->last = p;
        cl->cmd++;
    }

    return NGX_OK;
}


/* a reply to a command of the transaction */

static ngx_int_t
ngx_mail_plus_client_trans(ngx_mail_plus_client_t *cl)
{
    ngx_uint_t         k, i;
    ngx_connection_t  *c;

    c = cl->peer.connection;
    k = cl->reply++;

    if (cl->code == 421) {
        ngx_mail_plus_client_fail(cl, "4.4.2 the destination closes");
        return NGX_DONE;
    }

    if (k < cl->base) {

        if (cl->code != 250) {
            ngx_mail_plus_client_fail(cl, "4.5.0 RSET refused");
            return NGX_DONE;
        }

    } else if (k == cl->base) {

        if (cl->code / 100 != 2) {
            cl->mail_failed = 1;
            ngx_mail_plus_client_result(cl, NGX_MAIL_PLUS_JOB_ALL, cl->code,
                                        &cl->reply_text, 0);
        }

    } else if (k <= cl->base + cl->conn.job->nrcpts) {

        i = k - cl->base - 1;

        if (!cl->mail_failed) {
            if (cl->code / 100 == 2) {
                cl->ok[cl->accepted++] = i;

            } else {
                ngx_mail_plus_client_result(cl, i, cl->code, &cl->reply_text,
                                            1);
            }
        }

    } else if (cl->bdat) {

        /* the reply to BDAT LAST: as to the dot of DATA */

        if (cl->sending) {
            ngx_mail_plus_client_fail(cl, "4.5.0 BDAT answered before its "
                                          "content was sent");
            return NGX_DONE;
        }

        cl->state = ngx_mail_plus_client_st_dot;
        cl->reply = 0;

        return ngx_mail_plus_client_dot(cl);

    } else {

        /* DATA */

        if (cl->code != 354) {
            ngx_mail_plus_client_accepted(cl, cl->code, &cl->reply_text);
            ngx_mail_plus_client_finish(cl, 1);
            return NGX_DONE;
        }

        if (cl->accepted == 0 || cl->mail_failed) {
            ngx_mail_plus_client_fail(cl, "4.5.0 DATA accepted without "
                                          "recipients");
            return NGX_DONE;
        }

        cl->state = ngx_mail_plus_client_st_body;
        cl->sending = 1;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        return ngx_mail_plus_client_send(cl);
    }

    if (cl->bdat && cl->eod) {
        ngx_mail_plus_client_ahead(cl);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, cl->dcf->command_timeout);

    return ngx_mail_plus_client_commands(cl);
}


/* the reply after the content: one, or one per recipient with LMTP */

static ngx_int_t
ngx_mail_plus_client_dot(ngx_mail_plus_client_t *cl)
{
    ngx_uint_t  i;

    /*
     * the reply to the content of a transaction with a recipient ends it
     * (RFC 5321 4.1.1.4, RFC 3030 3): the next one needs no RSET
     */

    cl->clean = (cl->accepted > 0 && !cl->mail_failed && cl->code != 421);

    if (cl->conn.dest->protocol != NGX_MAIL_PLUS_LMTP || cl->accepted == 0) {
        ngx_mail_plus_client_accepted(cl, cl->code, &cl->reply_text);
        return ngx_mail_plus_client_end(cl, cl->code != 421);
    }

    i = cl->ok[cl->reply++];

    ngx_mail_plus_client_result(cl, i, cl->code, &cl->reply_text, 1);

    if (cl->reply < cl->accepted) {
        return NGX_OK;
    }

    return ngx_mail_plus_client_end(cl, 1);
}


/*
 * the end of data is written: with PIPELINING the destination's next job
 * follows at once, when the current transaction is sure to end with the
 * reply to its content (with BDAT: once MAIL and the RCPTs are answered
 * and a recipient was taken)
 */

static void
ngx_mail_plus_client_ahead(ngx_mail_plus_client_t *cl)
{
    ngx_connection_t     *c;
    ngx_mail_plus_job_t  *job, *next;

    c = cl->peer.connection;
    job = cl->conn.job;

    if (!cl->pipelining || !cl->eod || cl->conn.next) {
        return;
    }

    if (cl->bdat) {
        if (cl->state != ngx_mail_plus_client_st_trans
            || cl->reply != cl->base + 1 + job->nrcpts
            || cl->accepted == 0 || cl->mail_failed)
        {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "delivery client: BDAT LAST of %s written, "
                           "%ui replies read", job->msg->id, cl->reply);
            return;
        }

        /* only the reply to BDAT LAST is left */

        cl->state = ngx_mail_plus_client_st_dot;
        cl->reply = 0;
    }

    next = ngx_mail_plus_dest_pipeline(&cl->conn);

    if (next == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "delivery client: no job to pipeline after %s",
                       job->msg->id);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: MAIL for %s pipelined after the end "
                   "of data of %s to %V", next->msg->id, job->msg->id,
                   &cl->conn.dest->name);

    /* what is written is the next job's from now on */

    cl->base = 0;
    cl->ncmds = 1 + next->nrcpts + 1;
    cl->cmd = 0;
    cl->offset = 0;
    cl->bdat = 0;
    cl->bol = 1;
    cl->eod = 0;

    (void) ngx_mail_plus_client_write(cl);
}


static void
ngx_mail_plus_client_accepted(ngx_mail_plus_client_t *cl, ngx_uint_t code,
    ngx_str_t *text)
{
    ngx_uint_t  j;

    for (j = 0; j < cl->accepted; j++) {
        ngx_mail_plus_client_result(cl, cl->ok[j], code, text, 1);
    }
}


/*
 * a result to the runner: the i-th recipient's, or with
 * NGX_MAIL_PLUS_JOB_ALL each one's that has none yet
 */

static void
ngx_mail_plus_client_result(ngx_mail_plus_client_t *cl, ngx_uint_t i,
    ngx_uint_t code, ngx_str_t *text, ngx_uint_t remote)
{
    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, cl->peer.connection->log, 0,
                   "delivery client: result %ui for recipient %i of %s",
                   code, (ngx_int_t) i, cl->conn.job->msg->id);

    cl->conn.job->result(cl->conn.job, i, code, text, remote);
}


static void
ngx_mail_plus_client_write_handler(ngx_event_t *wev)
{
    ngx_connection_t        *c;
    ngx_mail_plus_client_t  *cl;

    c = wev->data;
    cl = c->data;

    if (wev->timedout) {
        ngx_mail_plus_client_fail(cl, "4.4.2 timed out sending to the "
                                      "destination");
        return;
    }

    if (cl->out->pos == cl->out->last && !cl->sending) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_mail_plus_client_fail(cl, "4.3.0 internal error");
        }

        return;
    }

    (void) ngx_mail_plus_client_send(cl);
}


/*
 * sends what is in the buffer; in the body state the buffer is refilled
 * from the spool file until the content and its dot have gone
 */

static ngx_int_t
ngx_mail_plus_client_send(ngx_mail_plus_client_t *cl)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = cl->peer.connection;
    b = cl->out;

    for ( ;; ) {

        if (cl->sending && !cl->reading
            && b->end - b->last >= 2 * NGX_MAIL_PLUS_CLIENT_CHUNK + 8)
        {
            rc = ngx_mail_plus_client_fill(cl);

            if (rc == NGX_BUSY) {

                /* the transaction is given up, and tried again later */

                ngx_mail_plus_client_fail(cl, "4.3.0 queue thread pool "
                                              "busy");
                return NGX_DONE;
            }

            if (rc == NGX_ERROR) {
                ngx_mail_plus_client_fail(cl, "4.3.0 spool read error");
                return NGX_DONE;
            }
        }

        if (b->pos == b->last) {

            /* the rest of the commands of a job pipelined ahead */

            if (cl->conn.next == NULL || cl->sending) {
                break;
            }

            b->pos = b->start;
            b->last = b->start;

            (void) ngx_mail_plus_client_write(cl);

            if (b->pos == b->last) {
                break;
            }
        }

        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_ERROR) {
            ngx_mail_plus_client_fail(cl, "4.4.2 connection lost");
            return NGX_DONE;
        }

        if (n == NGX_AGAIN || n == 0) {

            ngx_add_timer(c->write, cl->sending ? cl->dcf->data_timeout
                                                : cl->dcf->command_timeout);

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_mail_plus_client_fail(cl, "4.3.0 internal error");
                return NGX_DONE;
            }

            return NGX_OK;
        }

        b->pos += n;

        if (b->pos == b->last) {
            b->pos = b->start;
            b->last = b->start;
        }
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    return NGX_OK;
}


/*
 * the next chunk of the content is read in the thread pool (NGX_AGAIN);
 * NGX_BUSY: the pool cannot take it; at the end of the content, the dot
 */

static ngx_int_t
ngx_mail_plus_client_fill(ngx_mail_plus_client_t *cl)
{
    size_t                 len;
    ngx_int_t              rc;
    ngx_connection_t      *c;
    ngx_mail_plus_dmsg_t  *msg;

    msg = cl->conn.job->msg;
    c = cl->peer.connection;

    if (cl->offset >= msg->size) {
        ngx_mail_plus_client_fill_end(cl);
        return NGX_OK;
    }

    if (cl->reader == NULL) {
        cl->reader = ngx_mail_plus_queue_reader(msg->spool,
                                                NGX_MAIL_PLUS_CLIENT_CHUNK,
                                                c->log);
        if (cl->reader == NULL) {
            return NGX_ERROR;
        }
    }

    len = (size_t) ngx_min(msg->size - cl->offset, NGX_MAIL_PLUS_CLIENT_CHUNK);

    rc = ngx_mail_plus_queue_read(cl->reader, msg->fd, msg->body + cl->offset,
                                  len, ngx_mail_plus_client_read_done, cl);

    if (rc == NGX_AGAIN) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "delivery client: read of %uz bytes at %O posted",
                       len, cl->offset);
        cl->reading = 1;
    }

    return rc;
}


/* a chunk read: dot-stuffed into the buffer, and sent */

static void
ngx_mail_plus_client_read_done(void *data, u_char *buf, ssize_t n,
    ngx_err_t err)
{
    ngx_mail_plus_client_t *cl = data;

    u_char                *p, *q, *last;
    ngx_connection_t      *c;
    ngx_mail_plus_dmsg_t  *msg;

    cl->reading = 0;

    msg = cl->conn.job->msg;
    c = cl->peer.connection;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: read %z bytes", n);

    if (n <= 0) {
        ngx_log_error(NGX_LOG_CRIT, c->log, err,
                      "pread() of queue file %s failed", msg->id);
        ngx_mail_plus_client_fail(cl, "4.3.0 spool read error");
        return;
    }

    cl->offset += n;

    if (cl->bdat) {
        cl->out->last = ngx_cpymem(cl->out->last, buf, n);

    } else {
        q = cl->out->last;
        last = buf + n;

        for (p = buf; p < last; p++) {
            if (cl->bol && *p == '.') {
                *q++ = '.';
            }

            *q++ = *p;
            cl->bol = (*p == LF);
        }

        cl->out->last = q;
    }

    if (cl->offset >= msg->size) {
        ngx_mail_plus_client_fill_end(cl);
    }

    (void) ngx_mail_plus_client_send(cl);
}


/* the content is all in the buffer: the dot, and the wait for replies */

static void
ngx_mail_plus_client_fill_end(ngx_mail_plus_client_t *cl)
{
    ngx_connection_t  *c;

    c = cl->peer.connection;

    cl->sending = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: content of %O bytes read%s",
                   cl->offset, cl->bdat ? "" : ", the dot");

    if (!cl->bdat) {
        if (!cl->bol) {
            *cl->out->last++ = CR;
            *cl->out->last++ = LF;
        }

        cl->out->last = ngx_cpymem(cl->out->last, "." CRLF, 3);

        cl->state = ngx_mail_plus_client_st_dot;
        cl->reply = 0;
    }

    cl->eod = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, cl->dcf->data_timeout);

    ngx_mail_plus_client_ahead(cl);
}


/* the connection failed: what has no result yet is deferred */

static void
ngx_mail_plus_client_fail(ngx_mail_plus_client_t *cl, char *reason)
{
    ngx_str_t  text;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, cl->peer.connection->log, 0,
                   "delivery client: %V failed: %s",
                   &cl->conn.dest->name, reason);

    if (cl->conn.job == NULL) {
        cl->conn.done(&cl->conn, NGX_MAIL_PLUS_CONN_QUIT);
        return;
    }

    if (cl->state == ngx_mail_plus_client_st_trans && cl->reused
        && cl->reply == 0)
    {
        /*
         * a reused connection that the peer closed meanwhile: the job
         * takes a new connection, with no result recorded
         */

        ngx_log_error(NGX_LOG_INFO, &cl->log, 0,
                      "delivery: a reused connection to %V failed (%s), "
                      "trying a new one", &cl->conn.dest->name, reason);

        cl->conn.done(&cl->conn, NGX_MAIL_PLUS_CONN_RETRY);
        return;
    }

    text.data = (u_char *) reason;
    text.len = ngx_strlen(reason);

    ngx_mail_plus_client_result(cl, NGX_MAIL_PLUS_JOB_ALL, 451, &text, 0);

    ngx_mail_plus_client_finish(cl, 0);
}


/*
 * the transaction is over; with a job pipelined after it, the scheduler
 * makes that job the connection's, and its replies are read next
 */

static ngx_int_t
ngx_mail_plus_client_end(ngx_mail_plus_client_t *cl, ngx_uint_t keep)
{
    ngx_connection_t  *c;

    if (!keep || cl->conn.next == NULL) {
        ngx_mail_plus_client_finish(cl, keep);
        return NGX_DONE;
    }

    c = cl->peer.connection;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: transaction of %s to %V done, "
                   "the pipelined %s follows", cl->conn.job->msg->id,
                   &cl->conn.dest->name, cl->conn.next->msg->id);

    cl->conn.done(&cl->conn, NGX_MAIL_PLUS_CONN_KEEP);

    /* the reply to its MAIL is the next one read */

    cl->state = ngx_mail_plus_client_st_trans;
    cl->reply = 0;
    cl->accepted = 0;
    cl->mail_failed = 0;
    cl->clean = 0;
    cl->reused = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ngx_add_timer(c->read, cl->dcf->command_timeout);

    return ngx_mail_plus_client_commands(cl);
}


/*
 * the transaction is over: the scheduler hears whether the connection can
 * take another job; a read in flight belongs to this transaction, so the
 * connection is not reused then
 */

static void
ngx_mail_plus_client_finish(ngx_mail_plus_client_t *cl, ngx_uint_t keep)
{
    ngx_uint_t         how;
    ngx_connection_t  *c;

    c = cl->peer.connection;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!cl->greeted) {
        how = NGX_MAIL_PLUS_CONN_FAILED;

    } else if (keep && !cl->reading) {
        how = NGX_MAIL_PLUS_CONN_KEEP;
        cl->state = ngx_mail_plus_client_st_idle;

    } else {
        how = NGX_MAIL_PLUS_CONN_QUIT;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: transaction of %s to %V done, "
                   "keep:%ui how:%ui", cl->conn.job->msg->id,
                   &cl->conn.dest->name, keep, how);

    cl->conn.done(&cl->conn, how);
}


/* closed by the scheduler: QUIT when the peer is still worth telling */

void
ngx_mail_plus_client_close(ngx_mail_plus_client_t *cl, ngx_uint_t quit)
{
    ngx_connection_t  *c;

    c = cl->peer.connection;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery client: close connection to %V, quit:%ui",
                   &cl->conn.dest->name, quit);

    if (quit) {
        (void) c->send(c, (u_char *) "QUIT" CRLF, 6);
    }

#if (NGX_MAIL_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }

#endif

    if (cl->reader) {

        /* a read in flight frees it when it is done */

        ngx_mail_plus_queue_reader_free(cl->reader);
        cl->reader = NULL;
    }

    ngx_close_connection(c);
    ngx_destroy_pool(cl->pool);
}
