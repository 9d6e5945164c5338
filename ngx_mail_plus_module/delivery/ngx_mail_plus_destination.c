
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_delivery.h"


/*
 * The destinations and their scheduling.  A destination is a next hop (a
 * mailbox backend, a queue_route host, the relay host) with its waiting
 * jobs and its connections.  A job takes the most recently used idle
 * connection, else a new one while the destination has fewer than
 * queue_destination_concurrency, else waits its turn.  When a client says
 * its transaction is over, the scheduler decides: the connection takes the
 * next waiting job, or is parked in the idle list until queue_idle_timeout,
 * or is closed.  The runner hears of each job's end through the handler it
 * gave; the clients are started, reused and closed from here only.
 */


typedef struct {
    ngx_mail_plus_delivery_conf_t  *dcf;
    ngx_mail_plus_job_done_pt       done;      /* the runner's */
    ngx_mail_plus_dest_alive_pt     alive;     /* the runner's */
    ngx_queue_t                     dests;     /* ngx_mail_plus_dest_t */
    ngx_uint_t                      ndests;
} ngx_mail_plus_dest_ctx_t;


static void ngx_mail_plus_dest_start(ngx_mail_plus_dest_t *dest,
    ngx_mail_plus_job_t *job);
static ngx_int_t ngx_mail_plus_dest_take_idle(ngx_mail_plus_dest_t *dest,
    ngx_mail_plus_job_t *job);
static void ngx_mail_plus_dest_done(ngx_mail_plus_conn_t *conn,
    ngx_uint_t how);
static ngx_int_t ngx_mail_plus_dest_pipelined(ngx_mail_plus_conn_t *conn,
    ngx_uint_t how);
static ngx_mail_plus_job_t *ngx_mail_plus_dest_next_job(
    ngx_mail_plus_dest_t *dest);
static void ngx_mail_plus_dest_failed(ngx_mail_plus_dest_t *dest,
    ngx_str_t *text);
static void ngx_mail_plus_dest_suspend(ngx_mail_plus_dest_t *dest,
    ngx_mail_plus_job_t *job);
static void ngx_mail_plus_dest_up(ngx_mail_plus_dest_t *dest);
static void ngx_mail_plus_dest_park(ngx_mail_plus_conn_t *conn);
static void ngx_mail_plus_dest_idle_handler(ngx_event_t *ev);
static void ngx_mail_plus_dest_close(ngx_mail_plus_conn_t *conn,
    ngx_uint_t quit);


static ngx_mail_plus_dest_ctx_t  ngx_mail_plus_dest_ctx;


/* in a worker, when the runner starts */

void
ngx_mail_plus_dest_init(ngx_mail_plus_delivery_conf_t *dcf,
    ngx_mail_plus_job_done_pt done, ngx_mail_plus_dest_alive_pt alive)
{
    ngx_mail_plus_dest_ctx.dcf = dcf;
    ngx_mail_plus_dest_ctx.done = done;
    ngx_mail_plus_dest_ctx.alive = alive;

    ngx_queue_init(&ngx_mail_plus_dest_ctx.dests);
}


ngx_uint_t
ngx_mail_plus_dest_count(void)
{
    return ngx_mail_plus_dest_ctx.ndests;
}


/*
 * the destinations that failed, for a scan (room for as many as
 * ngx_mail_plus_dest_count()): those waiting for their next attempt, or
 * trying it, allow none of their deferred messages to be claimed; one
 * whose next attempt has come allows one message, its probe
 */

ngx_uint_t
ngx_mail_plus_dest_waits(ngx_mail_plus_queue_wait_t *wait)
{
    time_t                 now;
    ngx_uint_t             n;
    ngx_queue_t           *q;
    ngx_mail_plus_dest_t  *d;

    now = ngx_time();
    n = 0;

    for (q = ngx_queue_head(&ngx_mail_plus_dest_ctx.dests);
         q != ngx_queue_sentinel(&ngx_mail_plus_dest_ctx.dests);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_mail_plus_dest_t, queue);

        if (d->retry == 0) {
            continue;
        }

        wait[n].key = d->key;
        wait[n].allow = (d->probing || now < d->retry) ? 0 : 1;
        n++;
    }

    return n;
}


/* the earliest next attempt of a dead destination later than "since" */

time_t
ngx_mail_plus_dest_next_attempt(time_t since)
{
    time_t                 next;
    ngx_queue_t           *q;
    ngx_mail_plus_dest_t  *d;

    next = 0;

    for (q = ngx_queue_head(&ngx_mail_plus_dest_ctx.dests);
         q != ngx_queue_sentinel(&ngx_mail_plus_dest_ctx.dests);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_mail_plus_dest_t, queue);

        if (d->retry > since && !d->probing
            && (next == 0 || d->retry < next))
        {
            next = d->retry;
        }
    }

    return next;
}


/* an operator's flush: the destinations of the key (0: all) are tried */

void
ngx_mail_plus_dest_flush(uint32_t key)
{
    ngx_queue_t           *q;
    ngx_mail_plus_dest_t  *d;

    for (q = ngx_queue_head(&ngx_mail_plus_dest_ctx.dests);
         q != ngx_queue_sentinel(&ngx_mail_plus_dest_ctx.dests);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_mail_plus_dest_t, queue);

        if (d->retry && !d->probing && (key == 0 || d->key == key)) {

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                           "delivery destination %V: flushed, next attempt "
                           "now", &d->name);

            d->retry = ngx_time();
        }
    }
}


/* destinations live as long as the worker: as many as servers and routes */

ngx_mail_plus_dest_t *
ngx_mail_plus_dest_get(struct sockaddr *sa, socklen_t socklen,
    in_port_t port, ngx_uint_t protocol, ngx_mail_plus_relay_t *relay,
    ngx_mail_plus_server_t *server)
{
    u_char                          text[NGX_SOCKADDR_STRLEN];
    ngx_queue_t                    *q;
    ngx_mail_plus_dest_t           *d;
    ngx_mail_plus_delivery_conf_t  *dcf;

    dcf = ngx_mail_plus_dest_ctx.dcf;

    for (q = ngx_queue_head(&ngx_mail_plus_dest_ctx.dests);
         q != ngx_queue_sentinel(&ngx_mail_plus_dest_ctx.dests);
         q = ngx_queue_next(q))
    {
        d = ngx_queue_data(q, ngx_mail_plus_dest_t, queue);

        if (d->protocol == protocol
            && relay == d->relay
            && (port == 0 || ngx_inet_get_port(d->sockaddr) == port)
            && ngx_cmp_sockaddr(d->sockaddr, d->socklen, sa, socklen,
                                port == 0)
               == NGX_OK)
        {
            return d;
        }
    }

    d = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_mail_plus_dest_t));
    if (d == NULL) {
        return NULL;
    }

    d->sockaddr = ngx_pcalloc(ngx_cycle->pool, socklen);
    if (d->sockaddr == NULL) {
        return NULL;
    }

    ngx_memcpy(d->sockaddr, sa, socklen);
    d->socklen = socklen;

    if (port) {
        ngx_inet_set_port(d->sockaddr, port);
    }

    d->name.len = ngx_sock_ntop(d->sockaddr, d->socklen, text,
                                NGX_SOCKADDR_STRLEN, 1);
    d->name.data = ngx_pnalloc(ngx_cycle->pool, d->name.len);
    if (d->name.data == NULL) {
        return NULL;
    }

    ngx_memcpy(d->name.data, text, d->name.len);

    d->key = ngx_mail_plus_queue_key(&d->name);
    d->protocol = protocol;
    d->server = server;

    if (relay) {
        d->auth = relay->auth;
        d->tls = relay->tls;
        d->tls_name = relay->tls_name;
        d->relay = relay;

    } else {
        d->tls = dcf->tls;
        d->tls_name = server->name;    /* as written, null-terminated */
    }

    /* with "queue_tls_verify on", TLS that is required is also verified */

    if (d->tls == NGX_MAIL_PLUS_TLS_REQUIRED && dcf->tls_verify) {
        d->tls = NGX_MAIL_PLUS_TLS_VERIFY;
    }

    ngx_queue_init(&d->idle);
    ngx_queue_init(&d->jobs);
    ngx_queue_insert_tail(&ngx_mail_plus_dest_ctx.dests, &d->queue);
    ngx_mail_plus_dest_ctx.ndests++;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "delivery destination %V: created, %s, tls %ui",
                   &d->name,
                   protocol == NGX_MAIL_PLUS_LMTP ? "lmtp" : "smtp",
                   d->tls);

    return d;
}


/* a job takes an idle connection, or a new one, or waits its turn */

void
ngx_mail_plus_dest_submit(ngx_mail_plus_job_t *job)
{
    ngx_mail_plus_dest_t  *dest;

    dest = job->dest;

    if (dest->retry) {

        if (!dest->probing && ngx_time() < dest->retry) {
            ngx_mail_plus_dest_suspend(dest, job);
            return;
        }

        if (!dest->probing) {

            /* its next attempt: one connection, for this job */

            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                           "delivery destination %V: next attempt, with %s",
                           &dest->name, job->msg->id);

            dest->probing = 1;
            ngx_mail_plus_dest_start(dest, job);
            return;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                       "delivery destination %V: job of %s waits for the "
                       "next attempt", &dest->name, job->msg->id);

        ngx_queue_insert_tail(&dest->jobs, &job->queue);
        return;
    }

    if (ngx_mail_plus_dest_take_idle(dest, job) == NGX_OK) {
        return;
    }

    if (dest->active < ngx_mail_plus_dest_ctx.dcf->concurrency) {
        ngx_mail_plus_dest_start(dest, job);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "delivery destination %V: job of %s queued, "
                   "%ui connections", &dest->name, job->msg->id,
                   dest->active);

    ngx_queue_insert_tail(&dest->jobs, &job->queue);
}


/* a new connection for the job; when it cannot be opened, the waiting fail */

static void
ngx_mail_plus_dest_start(ngx_mail_plus_dest_t *dest, ngx_mail_plus_job_t *job)
{
    ngx_str_t              text;
    ngx_mail_plus_conn_t  *conn;

    dest->active++;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "delivery destination %V: client started for %s, "
                   "%ui connections", &dest->name, job->msg->id,
                   dest->active);

    conn = ngx_mail_plus_client_start(ngx_mail_plus_dest_ctx.dcf, dest, job,
                                      ngx_mail_plus_dest_done);
    if (conn) {
        return;
    }

    dest->active--;

    ngx_str_set(&text, "4.4.1 connect to the destination failed");

    ngx_mail_plus_dest_failed(dest, &text);
    ngx_mail_plus_dest_ctx.done(job, 451, &text);
}


/* the most recently used idle connection takes the job */

static ngx_int_t
ngx_mail_plus_dest_take_idle(ngx_mail_plus_dest_t *dest,
    ngx_mail_plus_job_t *job)
{
    ngx_queue_t           *q;
    ngx_mail_plus_conn_t  *conn;

    if (ngx_queue_empty(&dest->idle)) {
        return NGX_DECLINED;
    }

    q = ngx_queue_head(&dest->idle);
    conn = ngx_queue_data(q, ngx_mail_plus_conn_t, queue);

    ngx_queue_remove(q);
    conn->idle = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                   "delivery destination %V: idle connection reused for %s",
                   &dest->name, job->msg->id);

    ngx_mail_plus_client_next(conn->client, job);

    return NGX_OK;
}


/*
 * a client's transaction is over: the job is done, and the connection
 * takes the destination's next waiting job, or is parked, or closes
 */

static void
ngx_mail_plus_dest_done(ngx_mail_plus_conn_t *conn, ngx_uint_t how)
{
    ngx_str_t              text;
    ngx_mail_plus_job_t   *job;
    ngx_mail_plus_dest_t  *dest;

    job = conn->job;
    dest = conn->dest;

    conn->job = NULL;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                   "delivery destination %V: %s done, how %ui",
                   &dest->name, job ? job->msg->id : (u_char *) "no job",
                   how);

    if (job == NULL) {

        /* a client between jobs that fails */

        ngx_mail_plus_dest_close(conn, 0);
        return;
    }

    if (how != NGX_MAIL_PLUS_CONN_FAILED && how != NGX_MAIL_PLUS_CONN_RETRY
        && dest->retry)
    {
        ngx_mail_plus_dest_up(dest);
    }

    if (conn->next && ngx_mail_plus_dest_pipelined(conn, how) == NGX_OK) {
        ngx_mail_plus_dest_ctx.done(job, 0, NULL);
        return;
    }

    if (how == NGX_MAIL_PLUS_CONN_RETRY) {
        ngx_mail_plus_dest_close(conn, 0);
        ngx_mail_plus_dest_start(dest, job);
        return;
    }

    if (how == NGX_MAIL_PLUS_CONN_KEEP && (ngx_exiting || ngx_terminate)) {
        how = NGX_MAIL_PLUS_CONN_QUIT;
    }

    if (how != NGX_MAIL_PLUS_CONN_KEEP) {
        ngx_mail_plus_dest_close(conn, how == NGX_MAIL_PLUS_CONN_QUIT);
        conn = NULL;
    }

    if (how == NGX_MAIL_PLUS_CONN_FAILED) {

        /* dead first, so that the job is deferred to its next attempt */

        ngx_str_set(&text, "4.4.1 connect to the destination failed");
        ngx_mail_plus_dest_failed(dest, &text);
        ngx_mail_plus_dest_ctx.done(job, 0, NULL);
        return;
    }

    ngx_mail_plus_dest_ctx.done(job, 0, NULL);

    job = ngx_mail_plus_dest_next_job(dest);

    if (conn == NULL) {
        if (job) {
            ngx_mail_plus_dest_start(dest, job);
        }

    } else if (job) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                       "delivery destination %V: connection reused for %s",
                       &dest->name, job->msg->id);

        ngx_mail_plus_client_next(conn->client, job);

    } else {
        ngx_mail_plus_dest_park(conn);
    }

    /* alive again: the jobs that waited get every connection allowed */

    while (dest->active < ngx_mail_plus_dest_ctx.dcf->concurrency
           && dest->retry == 0
           && (job = ngx_mail_plus_dest_next_job(dest)) != NULL)
    {
        ngx_mail_plus_dest_start(dest, job);
    }
}


/*
 * the client has written the end of data of its job and can pipeline the
 * next transaction after it: the destination's next waiting job, if any
 */

ngx_mail_plus_job_t *
ngx_mail_plus_dest_pipeline(ngx_mail_plus_conn_t *conn)
{
    conn->next = ngx_mail_plus_dest_next_job(conn->dest);

    if (conn->next) {
        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                       "delivery destination %V: %s pipelined after %s",
                       &conn->dest->name, conn->next->msg->id,
                       conn->job->msg->id);
    }

    return conn->next;
}


/*
 * the end of a transaction with a job pipelined after it: on KEEP that job
 * is the connection's (NGX_OK); else it has no result and waits again,
 * first in line
 */

static ngx_int_t
ngx_mail_plus_dest_pipelined(ngx_mail_plus_conn_t *conn, ngx_uint_t how)
{
    ngx_mail_plus_job_t  *next;

    next = conn->next;
    conn->next = NULL;

    if (how == NGX_MAIL_PLUS_CONN_KEEP) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                       "delivery destination %V: connection goes on with "
                       "the pipelined %s", &conn->dest->name,
                       next->msg->id);

        conn->job = next;
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                   "delivery destination %V: pipelined %s waits again",
                   &conn->dest->name, next->msg->id);

    ngx_queue_insert_head(&conn->dest->jobs, &next->queue);

    return NGX_DECLINED;
}


static ngx_mail_plus_job_t *
ngx_mail_plus_dest_next_job(ngx_mail_plus_dest_t *dest)
{
    ngx_queue_t  *q;

    if (ngx_exiting || ngx_terminate || ngx_queue_empty(&dest->jobs)) {
        return NULL;
    }

    q = ngx_queue_head(&dest->jobs);
    ngx_queue_remove(q);

    return ngx_queue_data(q, ngx_mail_plus_job_t, queue);
}


/* the destination does not answer: its waiting jobs are deferred too */

static void
ngx_mail_plus_dest_failed(ngx_mail_plus_dest_t *dest, ngx_str_t *text)
{
    ngx_queue_t                    *q;
    ngx_mail_plus_job_t            *job;
    ngx_mail_plus_delivery_conf_t  *dcf;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "delivery destination %V: failed, \"%V\", "
                   "%ui connections left", &dest->name, text, dest->active);

    /*
     * dead when no connection of it is left, or its next attempt failed:
     * then nothing goes to it before the attempt after
     */

    if (dest->active == 0 || dest->probing) {
        dcf = ngx_mail_plus_dest_ctx.dcf;

        dest->backoff = dest->backoff ? ngx_min(dest->backoff * 2,
                                                dcf->retry_max)
                                      : ngx_min(dcf->retry_first,
                                                dcf->retry_max);
        dest->retry = ngx_time() + dest->backoff;
        dest->probing = 0;

        /* the reason, without its status code */

        dest->error.len = ngx_min(text->len, NGX_MAIL_PLUS_DEST_ERROR_LEN);
        dest->error.data = dest->text;
        ngx_memcpy(dest->text, text->data, dest->error.len);

        if (dest->error.len > 6 && dest->text[1] == '.'
            && dest->text[0] >= '2' && dest->text[0] <= '5')
        {
            dest->error.data = (u_char *) ngx_strlchr(dest->text,
                                                      dest->text
                                                      + dest->error.len,
                                                      ' ');
            if (dest->error.data == NULL) {
                dest->error.data = dest->text;

            } else {
                dest->error.data++;
                dest->error.len -= dest->error.data - dest->text;
            }
        }

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "delivery: destination %V is not reachable (%V), "
                      "next attempt in %T s", &dest->name, &dest->error,
                      dest->backoff);
    }

    while (!ngx_queue_empty(&dest->jobs)) {
        q = ngx_queue_head(&dest->jobs);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_mail_plus_job_t, queue);

        ngx_mail_plus_dest_ctx.done(job, 451, text);
    }
}


/* a dead destination's job, before its next attempt: deferred at once */

static void
ngx_mail_plus_dest_suspend(ngx_mail_plus_dest_t *dest,
    ngx_mail_plus_job_t *job)
{
    u_char     buf[NGX_MAIL_PLUS_DEST_ERROR_LEN + 64];
    ngx_str_t  text;

    text.data = buf;
    text.len = ngx_snprintf(buf, sizeof(buf),
                            "4.4.1 delivery temporarily suspended: %V",
                            &dest->error)
               - buf;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ngx_cycle->log, 0,
                   "delivery destination %V: job of %s deferred, next "
                   "attempt at %T", &dest->name, job->msg->id, dest->retry);

    ngx_mail_plus_dest_ctx.done(job, 451, &text);
}


/* a connection of a dead destination worked: it is alive again */

static void
ngx_mail_plus_dest_up(ngx_mail_plus_dest_t *dest)
{
    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "delivery: destination %V is reachable again",
                  &dest->name);

    dest->retry = 0;
    dest->backoff = 0;
    dest->probing = 0;

    ngx_mail_plus_dest_ctx.alive(dest);
}


/*
 * no job waits: the connection waits in the idle list, most recently used
 * first, until the idle timeout or until the peer closes it
 */

static void
ngx_mail_plus_dest_park(ngx_mail_plus_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->connection;

    conn->idle = 1;
    ngx_queue_insert_head(&conn->dest->idle, &conn->queue);

    c->data = conn;
    c->idle = 1;
    c->read->handler = ngx_mail_plus_dest_idle_handler;
    c->write->handler = ngx_mail_plus_dest_idle_handler;
    c->read->cancelable = 1;

    ngx_add_timer(c->read, ngx_mail_plus_dest_ctx.dcf->idle_timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery destination %V: connection parked, %M ms",
                   &conn->dest->name, ngx_mail_plus_dest_ctx.dcf->idle_timeout);
}


static void
ngx_mail_plus_dest_idle_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_mail_plus_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "delivery destination %V: idle connection event, "
                   "write:%d timedout:%d close:%d", &conn->dest->name,
                   ev->write, ev->timedout, c->close);

    if (!ev->write || ev->timedout || c->close) {
        ngx_mail_plus_dest_close(conn, !c->close && ev->timedout);
    }
}


static void
ngx_mail_plus_dest_close(ngx_mail_plus_conn_t *conn, ngx_uint_t quit)
{
    ngx_mail_plus_dest_t  *dest;

    dest = conn->dest;

    if (conn->idle) {
        ngx_queue_remove(&conn->queue);
        conn->idle = 0;
    }

    dest->active--;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, conn->connection->log, 0,
                   "delivery destination %V: connection closed%s, "
                   "%ui connections", &dest->name, quit ? " with QUIT" : "",
                   dest->active);

    ngx_mail_plus_client_close(conn->client, quit);
}
