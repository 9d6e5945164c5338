
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"
#include "ngx_mail_plus_dir_pgsql.h"


/*
 * A connection of the "pgsql" directory: made with libpq's
 * PQconnectStart() and PQconnectPoll(), its socket watched by an nginx
 * connection that is freed without closing it (libpq owns the socket,
 * and may replace it at any step of connecting, so it is watched anew
 * after each), a query sent with PQsendQueryParams() and flushed as the
 * socket takes it, its result read as it comes, and a timer on
 * connecting and on each query: a connection that times out is closed,
 * which cancels its query.
 */


#if (NGX_MAIL_PLUS_PGSQL)

static void ngx_mail_plus_dir_pgsql_connect_step(
    ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_connect_failed(
    ngx_mail_plus_dir_pgsql_conn_t *pc);
static ngx_int_t ngx_mail_plus_dir_pgsql_watch(
    ngx_mail_plus_dir_pgsql_conn_t *pc, PostgresPollingStatusType poll);
static void ngx_mail_plus_dir_pgsql_forget(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_uint_t flags);
static void ngx_mail_plus_dir_pgsql_handler(ngx_event_t *ev);
static void ngx_mail_plus_dir_pgsql_idle(ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_busy(ngx_mail_plus_dir_pgsql_conn_t *pc);
static void ngx_mail_plus_dir_pgsql_notice(void *arg, const char *message);


/* a connection started: NGX_ERROR, if it failed at once (pgsql->error) */

ngx_int_t
ngx_mail_plus_dir_pgsql_connect(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = pc->pgsql;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui connecting",
                   &pgsql->dir->name, pc->number);

    pc->pg = PQconnectStart(pgsql->conf->conninfo);

    if (pc->pg == NULL) {
        ngx_mail_plus_dir_pgsql_set_error(pgsql, "out of memory");
        return NGX_ERROR;
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_CONNECTING;
    pc->reused = 0;

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        ngx_mail_plus_dir_pgsql_set_error(pgsql, PQerrorMessage(pc->pg));
        goto failed;
    }

    (void) PQsetNoticeProcessor(pc->pg, ngx_mail_plus_dir_pgsql_notice, pc);

    if (ngx_mail_plus_dir_pgsql_watch(pc, PGRES_POLLING_WRITING) != NGX_OK) {
        goto failed;
    }

    ngx_add_timer(&pc->timer, pgsql->dir->timeout);

    return NGX_OK;

failed:

    ngx_mail_plus_dir_pgsql_close(pc);
    ngx_mail_plus_dir_state(pgsql->dir, 0, &pgsql->error, pgsql->log);

    return NGX_ERROR;
}


/* the socket is ready as libpq asked: its next step of connecting */

static void
ngx_mail_plus_dir_pgsql_connect_step(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_pgsql_t  *pgsql;
    PostgresPollingStatusType   poll;

    pgsql = pc->pgsql;

    /* libpq may close the socket and open another, of the same number */

    ngx_mail_plus_dir_pgsql_forget(pc, 0);

    poll = PQconnectPoll(pc->pg);

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui: connecting, "
                   "step %d", &pgsql->dir->name, pc->number, poll);

    switch (poll) {

    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:

        if (ngx_mail_plus_dir_pgsql_watch(pc, poll) != NGX_OK) {
            ngx_mail_plus_dir_pgsql_connect_failed(pc);
        }

        return;

    case PGRES_POLLING_OK:
        break;

    default:
        ngx_mail_plus_dir_pgsql_set_error(pgsql, PQerrorMessage(pc->pg));
        ngx_mail_plus_dir_pgsql_connect_failed(pc);
        return;
    }

    if (PQsetnonblocking(pc->pg, 1) != 0
        || ngx_mail_plus_dir_pgsql_watch(pc, PGRES_POLLING_READING) != NGX_OK)
    {
        ngx_mail_plus_dir_pgsql_set_error(pgsql, PQerrorMessage(pc->pg));
        ngx_mail_plus_dir_pgsql_connect_failed(pc);
        return;
    }

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_IDLE;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui connected, "
                   "%ui lookups wait", &pgsql->dir->name, pc->number,
                   pgsql->nwaiting);

    ngx_mail_plus_dir_state(pgsql->dir, 1, NULL, pgsql->log);

    ngx_mail_plus_dir_pgsql_dispatch(pgsql);
    ngx_mail_plus_dir_pgsql_fail_waiting(pgsql);
}


/* a connection could not be made (pgsql->error): not tried again now */

static void
ngx_mail_plus_dir_pgsql_connect_failed(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    ngx_mail_plus_dir_pgsql_t  *pgsql;

    pgsql = pc->pgsql;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui failed: %V",
                   &pgsql->dir->name, pc->number, &pgsql->error);

    ngx_mail_plus_dir_pgsql_close(pc);
    ngx_mail_plus_dir_state(pgsql->dir, 0, &pgsql->error, pgsql->log);
    ngx_mail_plus_dir_pgsql_fail_waiting(pgsql);
}


/*
 * libpq's socket watched by a new nginx connection: for reading or
 * writing while connecting, for both once connected
 */

static ngx_int_t
ngx_mail_plus_dir_pgsql_watch(ngx_mail_plus_dir_pgsql_conn_t *pc,
    PostgresPollingStatusType poll)
{
    ngx_int_t          rc;
    ngx_socket_t       s;
    ngx_connection_t  *c;

    ngx_mail_plus_dir_pgsql_forget(pc, 0);

    s = PQsocket(pc->pg);

    if (s == (ngx_socket_t) -1) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, "no socket");
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, pc->pgsql->log);

    if (c == NULL) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                          "no free worker connection");
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = ngx_mail_plus_dir_pgsql_handler;
    c->write->handler = ngx_mail_plus_dir_pgsql_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    pc->c = c;

    if (poll == PGRES_POLLING_WRITING) {
        rc = ngx_handle_write_event(c->write, 0);

    } else {
        rc = ngx_handle_read_event(c->read, 0);
    }

    if (rc != NGX_OK) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, "cannot watch the socket");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * the nginx connection of a socket freed, the socket left to libpq:
 * NGX_CLOSE_EVENT when libpq closes it next
 */

static void
ngx_mail_plus_dir_pgsql_forget(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_uint_t flags)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (c == NULL) {
        return;
    }

    pc->c = NULL;

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->active || c->read->disabled) {
        ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active || c->write->disabled) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
}


void
ngx_mail_plus_dir_pgsql_close(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->pg) {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pc->pgsql->log, 0,
                       "router: pgsql \"%V\" connection %ui closed",
                       &pc->pgsql->dir->name, pc->number);

        ngx_mail_plus_dir_pgsql_forget(pc, NGX_CLOSE_EVENT);

        PQfinish(pc->pg);
        pc->pg = NULL;
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_CLOSED;
    pc->req = NULL;
    pc->flushing = 0;
}


static void
ngx_mail_plus_dir_pgsql_handler(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_mail_plus_dir_pgsql_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "router: pgsql \"%V\" connection %ui: %s event, state %ui",
                   &pc->pgsql->dir->name, pc->number,
                   ev->write ? "write" : "read", pc->state);

    switch (pc->state) {

    case NGX_MAIL_PLUS_PGSQL_CONNECTING:
        ngx_mail_plus_dir_pgsql_connect_step(pc);
        return;

    case NGX_MAIL_PLUS_PGSQL_IDLE:
        if (!ev->write) {
            ngx_mail_plus_dir_pgsql_idle(pc);
        }

        return;

    case NGX_MAIL_PLUS_PGSQL_BUSY:
        ngx_mail_plus_dir_pgsql_busy(pc);
        return;
    }
}


/* no answer in time: the connection is closed, which cancels the query */

void
ngx_mail_plus_dir_pgsql_timeout(ngx_event_t *ev)
{
    ngx_mail_plus_dir_pgsql_conn_t  *pc;

    pc = ev->data;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ev->log, 0,
                   "router: pgsql \"%V\" connection %ui: timer fired, "
                   "state %ui", &pc->pgsql->dir->name, pc->number, pc->state);

    if (pc->state == NGX_MAIL_PLUS_PGSQL_CONNECTING) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                          "timed out connecting");
        ngx_mail_plus_dir_pgsql_connect_failed(pc);
        return;
    }

    if (pc->state == NGX_MAIL_PLUS_PGSQL_BUSY) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                          "timed out waiting for the query");
        pc->broken = 1;
        ngx_mail_plus_dir_pgsql_finish(pc);
    }
}


/* the query of a lookup sent: NGX_ERROR, the connection is broken */

ngx_int_t
ngx_mail_plus_dir_pgsql_send(ngx_mail_plus_dir_pgsql_conn_t *pc,
    ngx_mail_plus_dir_req_t *req)
{
    int                             rc;
    char                           *login;
    const char                     *values[1];
    ngx_mail_plus_dir_pgsql_req_t  *lr;

    login = (char *) ngx_pnalloc(req->pool, req->login.len + 1);
    if (login == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) login, req->login.data, req->login.len + 1);

    values[0] = login;

    if (!PQsendQueryParams(pc->pg, pc->pgsql->conf->query[req->type], 1,
                           NULL, values, NULL, NULL, 0))
    {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, PQerrorMessage(pc->pg));

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, req->log, 0,
                       "router: pgsql \"%V\" connection %ui cannot send: %V",
                       &req->dir->name, pc->number, &pc->pgsql->error);
        return NGX_ERROR;
    }

    rc = PQflush(pc->pg);

    if (rc == -1) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, PQerrorMessage(pc->pg));
        return NGX_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, req->log, 0,
                   "router: pgsql \"%V\" connection %ui%s sent the query "
                   "for \"%V\"", &req->dir->name, pc->number,
                   pc->reused ? " (reused)" : "", &req->login);

    if (rc == 1) {
        pc->c->write->ready = 0;

        if (ngx_handle_write_event(pc->c->write, 0) != NGX_OK) {
            ngx_mail_plus_dir_pgsql_set_error(pc->pgsql,
                                              "cannot watch the socket");
            return NGX_ERROR;
        }
    }

    pc->state = NGX_MAIL_PLUS_PGSQL_BUSY;
    pc->req = req;
    pc->flushing = (rc == 1);
    pc->answered = 0;
    pc->broken = 0;

    lr = req->ctx;
    lr->pc = pc;

    ngx_add_timer(&pc->timer, pc->pgsql->dir->timeout);

    return NGX_OK;
}


/* an idle connection readable: the server closed it, or a notice */

static void
ngx_mail_plus_dir_pgsql_idle(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    PGnotify  *notify;

    if (PQconsumeInput(pc->pg) && PQstatus(pc->pg) == CONNECTION_OK) {

        while ((notify = PQnotifies(pc->pg)) != NULL) {
            PQfreemem(notify);
        }

        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, pc->pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui closed by the server "
                   "while idle", &pc->pgsql->dir->name, pc->number);

    ngx_mail_plus_dir_pgsql_close(pc);
}


/* the query is being sent, or its answer read */

static void
ngx_mail_plus_dir_pgsql_busy(ngx_mail_plus_dir_pgsql_conn_t *pc)
{
    int        rc;
    PGresult  *res;

    if (pc->flushing) {
        rc = PQflush(pc->pg);

        if (rc == -1) {
            goto broken;
        }

        pc->flushing = (rc == 1);
    }

    if (!PQconsumeInput(pc->pg)) {
        goto broken;
    }

    while (!PQisBusy(pc->pg)) {

        res = PQgetResult(pc->pg);

        if (res == NULL) {
            ngx_mail_plus_dir_pgsql_finish(pc);
            return;
        }

        ngx_mail_plus_dir_pgsql_result(pc, res);

        PQclear(res);
    }

    if (PQstatus(pc->pg) == CONNECTION_BAD) {
        goto broken;
    }

    if (ngx_handle_read_event(pc->c->read, 0) != NGX_OK) {
        ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, "cannot watch the socket");
        pc->broken = 1;
        ngx_mail_plus_dir_pgsql_finish(pc);
    }

    return;

broken:

    ngx_mail_plus_dir_pgsql_set_error(pc->pgsql, PQerrorMessage(pc->pg));
    pc->broken = 1;
    ngx_mail_plus_dir_pgsql_finish(pc);
}


/* the server's notices (libpq writes them to stderr otherwise) */

static void
ngx_mail_plus_dir_pgsql_notice(void *arg, const char *message)
{
#if (NGX_DEBUG)
    ngx_mail_plus_dir_pgsql_conn_t *pc = arg;

    size_t  n;

    for (n = 0; n < 200 && (u_char) message[n] >= 0x20; n++) {
        /* void */
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, pc->pgsql->log, 0,
                   "router: pgsql \"%V\" connection %ui: notice \"%*s\"",
                   &pc->pgsql->dir->name, pc->number, n, message);
#endif
}

#endif
