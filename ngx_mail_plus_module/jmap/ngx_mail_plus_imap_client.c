
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_proxy.h"
#include "ngx_mail_plus_imap_session.h"


/*
 * The asynchronous IMAP client of the JMAP endpoint: a session's
 * connection, its login and its queue of commands (see
 * ngx_mail_plus_imap_client.h).  The login is a few commands of the
 * client's own ("internal") run before the caller's, one step at a time:
 * CAPABILITY if the greeting did not tell, LOGIN or AUTHENTICATE,
 * CAPABILITY again if the login's answer did not tell, ENABLE.  One
 * command is on the wire at a time; its text is sent as a chain up to a
 * synchronizing literal, then the rest after the server's "+".
 *
 * UTF8=ACCEPT is not enabled: a command may be made before the login
 * tells what the backend offers, so mailbox names are always in modified
 * UTF-7 (imap->utf8 stays 0).
 */


#define NGX_MAIL_PLUS_IMAP_BUF              16384

#define NGX_MAIL_PLUS_IMAP_STEP_CAPABILITY  1
#define NGX_MAIL_PLUS_IMAP_STEP_LOGIN       2
#define NGX_MAIL_PLUS_IMAP_STEP_ENABLE      3


static ngx_mail_plus_imap_session_t *ngx_mail_plus_imap_create(
    ngx_mail_plus_imap_conf_t *conf, ngx_mail_plus_imap_target_t *target);
static void ngx_mail_plus_imap_set_log(ngx_mail_plus_imap_session_t *s,
    ngx_log_t *log);
static void ngx_mail_plus_imap_connect(ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_try(ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_failover(
    ngx_mail_plus_imap_session_t *s, const char *why);
static void ngx_mail_plus_imap_timer_handler(ngx_event_t *ev);
static void ngx_mail_plus_imap_post_handler(ngx_event_t *ev);
static ngx_int_t ngx_mail_plus_imap_test_connect(ngx_connection_t *c);
static ngx_int_t ngx_mail_plus_imap_parse_all(
    ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_dispatch(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp);
static ngx_int_t ngx_mail_plus_imap_greeting(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp);
static ngx_int_t ngx_mail_plus_imap_continuation(
    ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_untagged(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp);
static ngx_int_t ngx_mail_plus_imap_tagged(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp);
static void ngx_mail_plus_imap_data(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp);
static void ngx_mail_plus_imap_vanished(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_value_t *data);
static void ngx_mail_plus_imap_code(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_value_t *code);
static void ngx_mail_plus_imap_caps(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_value_t *list, ngx_uint_t from);
static void ngx_mail_plus_imap_selected(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_mail_plus_imap_step(ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_login(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_mail_plus_imap_authenticate(
    ngx_mail_plus_imap_session_t *s, ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_mail_plus_imap_master(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_pool_t *pool);
static void ngx_mail_plus_imap_internal_handler(
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_mail_plus_imap_next(ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_write(ngx_mail_plus_imap_session_t *s);
static ngx_int_t ngx_mail_plus_imap_part(ngx_mail_plus_imap_cmd_t *cmd,
    u_char *data, size_t len, ngx_uint_t sync);
static ngx_int_t ngx_mail_plus_imap_call(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd);
static ngx_int_t ngx_mail_plus_imap_fail(ngx_mail_plus_imap_session_t *s,
    const char *error);
static ngx_int_t ngx_mail_plus_imap_fail_queue(
    ngx_mail_plus_imap_session_t *s);
static void ngx_mail_plus_imap_finish(ngx_mail_plus_imap_session_t *s,
    ngx_uint_t keep);
static void ngx_mail_plus_imap_close_connection(
    ngx_mail_plus_imap_session_t *s);
static void ngx_mail_plus_imap_wipe(ngx_mail_plus_imap_session_t *s);


ngx_mail_plus_imap_t *
ngx_mail_plus_imap_open(ngx_mail_plus_imap_conf_t *conf,
    ngx_mail_plus_imap_target_t *target)
{
    ngx_mail_plus_route_t         *route;
    ngx_mail_plus_imap_session_t  *s;

    route = target->route;

    s = ngx_mail_plus_imap_keepalive_get(route->server, route->port,
                                         &target->login, target->log);

    if (s) {
        ngx_mail_plus_imap_set_log(s, target->log);
        s->conf = conf;
        s->state = NGX_MAIL_PLUS_IMAP_READY;
        s->spare = 0;

        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: reused session to %V of \"%V\"",
                       &s->name, &s->login);

        return &s->imap;
    }

    s = ngx_mail_plus_imap_create(conf, target);
    if (s == NULL) {
        return NULL;
    }

    ngx_mail_plus_imap_connect(s);

    return &s->imap;
}


static ngx_mail_plus_imap_session_t *
ngx_mail_plus_imap_create(ngx_mail_plus_imap_conf_t *conf,
    ngx_mail_plus_imap_target_t *target)
{
    ngx_pool_t                    *pool;
    ngx_mail_plus_route_t         *route;
    ngx_mail_plus_imap_session_t  *s;

    pool = ngx_create_pool(4096, target->log);
    if (pool == NULL) {
        return NULL;
    }

    s = ngx_pcalloc(pool, sizeof(ngx_mail_plus_imap_session_t));
    if (s == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    route = target->route;

    s->pool = pool;
    s->conf = conf;
    s->route = route;
    s->imap.priv = s;
    ngx_mail_plus_imap_set_log(s, target->log);
    pool->log = &s->log;

    s->login.data = ngx_pstrdup(pool, &target->login);
    s->login.len = target->login.len;
    s->secret.data = ngx_pstrdup(pool, &target->secret);
    s->secret.len = target->secret.len;
    s->token = target->token;

    s->in = ngx_create_temp_buf(pool, NGX_MAIL_PLUS_IMAP_BUF);

    if ((s->login.len && s->login.data == NULL)
        || (s->secret.len && s->secret.data == NULL)
        || s->in == NULL)
    {
        ngx_mail_plus_imap_wipe(s);
        ngx_destroy_pool(pool);
        return NULL;
    }

    s->timer.handler = ngx_mail_plus_imap_timer_handler;
    s->timer.data = s;
    s->timer.log = &s->log;
    s->post.handler = ngx_mail_plus_imap_post_handler;
    s->post.data = s;
    s->post.log = &s->log;

    return s;
}


/* the caller's log, without its handler: the session may outlive it */

static void
ngx_mail_plus_imap_set_log(ngx_mail_plus_imap_session_t *s, ngx_log_t *log)
{
    s->log = *log;
    s->log.handler = NULL;
    s->log.data = NULL;
    s->log.action = NULL;
    s->imap.log = &s->log;
}


static void
ngx_mail_plus_imap_connect(ngx_mail_plus_imap_session_t *s)
{
    ngx_int_t  rc;

    for ( ;; ) {
        rc = ngx_mail_plus_imap_try(s);

        if (rc == NGX_OK) {
            return;
        }

        if (rc == NGX_ERROR) {
            (void) ngx_mail_plus_imap_fail(s, "out of memory");
            return;
        }

        if (ngx_mail_plus_imap_failover(s, "refused") != NGX_OK) {
            return;
        }
    }
}


static ngx_int_t
ngx_mail_plus_imap_try(ngx_mail_plus_imap_session_t *s)
{
    ngx_int_t                rc;
    ngx_connection_t        *c;
    struct sockaddr         *sa;
    ngx_mail_plus_route_t   *route;
    ngx_mail_plus_server_t  *server;

    route = s->route;
    server = route->server;

    sa = ngx_palloc(s->pool, server->addr.socklen);
    if (sa == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(sa, server->addr.sockaddr, server->addr.socklen);
    ngx_inet_set_port(sa, route->port);

    s->server = server;
    s->port = route->port;
    s->name.data = s->name_text;
    s->name.len = ngx_sock_ntop(sa, server->addr.socklen, s->name_text,
                                NGX_SOCKADDR_STRLEN, 1);

    ngx_memzero(&s->peer, sizeof(ngx_peer_connection_t));

    s->peer.sockaddr = sa;
    s->peer.socklen = server->addr.socklen;
    s->peer.name = &s->name;
    s->peer.get = ngx_event_get_peer;
    s->peer.log = &s->log;
    s->peer.log_error = NGX_ERROR_ERR;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: connecting to %V for \"%V\"",
                   &s->name, &s->login);

    rc = ngx_event_connect_peer(&s->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (s->peer.connection) {
            ngx_close_connection(s->peer.connection);
            s->peer.connection = NULL;
        }

        return NGX_DECLINED;
    }

    c = s->peer.connection;
    s->connection = c;

    c->data = s;
    c->pool = s->pool;
    c->log = &s->log;
    c->read->log = &s->log;
    c->write->log = &s->log;
    c->read->handler = ngx_mail_plus_imap_read_handler;
    c->write->handler = ngx_mail_plus_imap_write_handler;

    (void) ngx_tcp_nodelay(c);

    s->in->pos = s->in->start;
    s->in->last = s->in->start;
    s->mid = 0;

    if (ngx_mail_plus_imap_parser_init(&s->parser, &s->conf->limits,
                                       s->pool)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->parser.log = &s->log;

    s->state = (rc == NGX_AGAIN) ? NGX_MAIL_PLUS_IMAP_CONNECTING
                                 : NGX_MAIL_PLUS_IMAP_GREETING;

    ngx_add_timer(&s->timer, s->conf->timeout);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: %s, timer set",
                   rc == NGX_AGAIN ? "connect in progress"
                                   : "connected, waiting for the greeting");

    return NGX_OK;
}


/*
 * the server failed before its greeting: the next server of the ring
 * (NGX_OK), or none is left and the session failed
 */

static ngx_int_t
ngx_mail_plus_imap_failover(ngx_mail_plus_imap_session_t *s, const char *why)
{
    ngx_mail_plus_route_t  *route;

    route = s->route;

    ngx_log_error(NGX_LOG_WARN, &s->log, 0,
                  "jmap: IMAP backend %V of \"%V\": %s, trying the next",
                  &s->name, &s->login, why);

    ngx_mail_plus_imap_close_connection(s);
    s->state = 0;

    ngx_mail_plus_health_report(route->server, route->protocol, 0, &s->log);

    if (ngx_mail_plus_router_next(route) != NGX_OK) {
        return ngx_mail_plus_imap_fail(s, "no backend server answered");
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: failover to server %V",
                   &route->server->name);

    return NGX_OK;
}


static void
ngx_mail_plus_imap_timer_handler(ngx_event_t *ev)
{
    ngx_mail_plus_imap_session_t  *s = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: timer fired in state %ui", s->state);

    switch (s->state) {

    case NGX_MAIL_PLUS_IMAP_CONNECTING:
    case NGX_MAIL_PLUS_IMAP_GREETING:
        if (ngx_mail_plus_imap_failover(s, "no greeting in time") == NGX_OK) {
            ngx_mail_plus_imap_connect(s);
        }

        return;

    case NGX_MAIL_PLUS_IMAP_KEPT:
        ngx_mail_plus_imap_keepalive_drop(s, "kept long enough");
        return;

    default:
        ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                      "jmap: IMAP backend %V of \"%V\" timed out",
                      &s->name, &s->login);
        (void) ngx_mail_plus_imap_fail(s,
                                       "the backend did not answer in time");
    }
}


/* a command queued on a session that failed: its handler, from here */

static void
ngx_mail_plus_imap_post_handler(ngx_event_t *ev)
{
    ngx_mail_plus_imap_session_t  *s = ev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: failing the queued commands");

    (void) ngx_mail_plus_imap_fail_queue(s);
}


void
ngx_mail_plus_imap_write_handler(ngx_event_t *wev)
{
    ngx_connection_t              *c;
    ngx_mail_plus_imap_session_t  *s;

    c = wev->data;
    s = c->data;

    if (s->state == NGX_MAIL_PLUS_IMAP_CONNECTING) {
        if (ngx_mail_plus_imap_test_connect(c) != NGX_OK) {
            if (ngx_mail_plus_imap_failover(s, "connection refused")
                == NGX_OK)
            {
                ngx_mail_plus_imap_connect(s);
            }

            return;
        }

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: connected, waiting for the greeting");

        s->state = NGX_MAIL_PLUS_IMAP_GREETING;
        return;
    }

    if (s->state != NGX_MAIL_PLUS_IMAP_READY
        && s->state != NGX_MAIL_PLUS_IMAP_LOGIN)
    {
        return;
    }

    if (s->current == NULL) {
        (void) ngx_mail_plus_imap_next(s);
        return;
    }

    if (s->out) {
        (void) ngx_mail_plus_imap_write(s);
    }
}


static ngx_int_t
ngx_mail_plus_imap_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void) ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_mail_plus_imap_read_handler(ngx_event_t *rev)
{
    ssize_t                        n;
    ngx_buf_t                     *b;
    ngx_connection_t              *c;
    ngx_mail_plus_imap_session_t  *s;

    c = rev->data;
    s = c->data;
    b = s->in;

    if (s->state == NGX_MAIL_PLUS_IMAP_CONNECTING) {
        s->state = NGX_MAIL_PLUS_IMAP_GREETING;
    }

    for ( ;; ) {
        if (b->pos == b->last) {
            b->pos = b->start;
            b->last = b->start;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                (void) ngx_mail_plus_imap_fail(s, "the connection failed");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                           "jmap imap: connection closed by %V", &s->name);

            if (s->state == NGX_MAIL_PLUS_IMAP_GREETING) {
                if (ngx_mail_plus_imap_failover(s, "closed before its "
                                                "greeting")
                    == NGX_OK)
                {
                    ngx_mail_plus_imap_connect(s);
                }

                return;
            }

            (void) ngx_mail_plus_imap_fail(s, s->bye
                                    ? "the backend ended the session"
                                    : "the backend closed the connection");
            return;
        }

        b->last += n;

        if (s->current && s->timer.timer_set) {
            ngx_add_timer(&s->timer, s->conf->timeout);
        }

        if (ngx_mail_plus_imap_parse_all(s) != NGX_OK) {
            return;
        }
    }
}


/* NGX_OK: go on reading; NGX_DONE: the session failed or went */

static ngx_int_t
ngx_mail_plus_imap_parse_all(ngx_mail_plus_imap_session_t *s)
{
    ngx_int_t                       rc;
    ngx_pool_t                     *pool;
    ngx_mail_plus_imap_response_t  *resp;

    while (s->in->pos < s->in->last) {

        if (!s->mid) {
            pool = (s->current && !s->current->internal) ? s->current->pool
                                                         : s->pool;
            s->parser.pool = pool;
        }

        rc = ngx_mail_plus_imap_parse(&s->parser, s->in);

        if (rc == NGX_AGAIN) {
            s->mid = 1;
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                          "jmap: IMAP backend %V sent a bad response: %s",
                          &s->name, s->parser.error);
            (void) ngx_mail_plus_imap_fail(s,
                            "the backend's response was not understood");
            return NGX_DONE;
        }

        s->mid = 0;
        resp = s->parser.response;

        if (s->parser.pool == s->pool) {
            s->spare += resp->size;

            if (s->spare > s->conf->limits.total) {
                (void) ngx_mail_plus_imap_fail(s,
                                 "the backend sent too much outside commands");
                return NGX_DONE;
            }
        }

        if (ngx_mail_plus_imap_dispatch(s, resp) != NGX_OK) {
            return NGX_DONE;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_imap_dispatch(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp)
{
    switch (resp->kind) {

    case NGX_MAIL_PLUS_IMAP_CONTINUATION:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: continuation read");
        return ngx_mail_plus_imap_continuation(s);

    case NGX_MAIL_PLUS_IMAP_UNTAGGED:
        if (s->state == NGX_MAIL_PLUS_IMAP_GREETING) {
            return ngx_mail_plus_imap_greeting(s, resp);
        }

        return ngx_mail_plus_imap_untagged(s, resp);

    default:
        return ngx_mail_plus_imap_tagged(s, resp);
    }
}


static ngx_int_t
ngx_mail_plus_imap_greeting(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_mail_plus_route_t  *route;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: greeting read, status %ui",
                   (ngx_uint_t) resp->status);

    if (resp->status != NGX_MAIL_PLUS_IMAP_OK
        && resp->status != NGX_MAIL_PLUS_IMAP_PREAUTH)
    {
        if (ngx_mail_plus_imap_failover(s, "refused in its greeting")
            == NGX_OK)
        {
            ngx_mail_plus_imap_connect(s);
        }

        return NGX_DONE;
    }

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    route = s->route;
    ngx_mail_plus_health_report(route->server, route->protocol, 1, &s->log);

    s->logged_in = (resp->status == NGX_MAIL_PLUS_IMAP_PREAUTH);
    s->state = NGX_MAIL_PLUS_IMAP_LOGIN;

    ngx_mail_plus_imap_code(s, resp->code);

    return ngx_mail_plus_imap_step(s);
}


static ngx_int_t
ngx_mail_plus_imap_continuation(ngx_mail_plus_imap_session_t *s)
{
    ngx_mail_plus_imap_cmd_t  *cmd;

    cmd = s->current;

    if (cmd && s->wait_cont) {
        s->wait_cont = 0;
        return ngx_mail_plus_imap_write(s);
    }

    if (cmd && cmd->auth && s->part == cmd->parts.nelts && s->out == NULL) {

        /* RFC 7628's error: the dummy response, then NO */

        if (ngx_mail_plus_imap_part(cmd, (u_char *) "AQ==", 4, 0) != NGX_OK) {
            return ngx_mail_plus_imap_fail(s, "out of memory");
        }

        s->crlf_sent = 0;
        cmd->auth = 0;

        return ngx_mail_plus_imap_write(s);
    }

    ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                  "jmap: IMAP backend %V sent an unexpected continuation",
                  &s->name);

    return ngx_mail_plus_imap_fail(s, "the backend's response was not "
                                   "understood");
}


static ngx_int_t
ngx_mail_plus_imap_untagged(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_int_t                        rc;
    ngx_mail_plus_imap_cmd_t        *cmd;
    ngx_mail_plus_imap_response_t  **slot;

    if (resp->status == NGX_MAIL_PLUS_IMAP_BYE) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: BYE read");
        s->bye = 1;
        return NGX_OK;
    }

    ngx_mail_plus_imap_data(s, resp);

    cmd = s->current;

    if (cmd == NULL || cmd->internal) {
        return NGX_OK;
    }

    if (cmd->untagged_handler) {
        rc = cmd->untagged_handler(cmd, resp);

        if (rc == NGX_OK) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            return ngx_mail_plus_imap_fail(s, "a response was refused");
        }
    }

    if (cmd->untagged.elts == NULL
        && ngx_array_init(&cmd->untagged, cmd->pool, 8,
                          sizeof(ngx_mail_plus_imap_response_t *))
           != NGX_OK)
    {
        return ngx_mail_plus_imap_fail(s, "out of memory");
    }

    slot = ngx_array_push(&cmd->untagged);
    if (slot == NULL) {
        return ngx_mail_plus_imap_fail(s, "out of memory");
    }

    *slot = resp;

    return NGX_OK;
}


static ngx_int_t
ngx_mail_plus_imap_tagged(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp)
{
    u_char                     buf[NGX_INT_T_LEN + 1], *p;
    ngx_mail_plus_imap_cmd_t  *cmd;

    cmd = s->current;

    if (cmd == NULL || s->out) {
        goto bad;
    }

    p = ngx_sprintf(buf, "J%ui", cmd->tag);

    if ((size_t) (p - buf) != resp->tag.len
        || ngx_strncmp(buf, resp->tag.data, resp->tag.len) != 0)
    {
        goto bad;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: answer to J%ui read, status %ui",
                   cmd->tag, (ngx_uint_t) resp->status);

    ngx_mail_plus_imap_code(s, resp->code);

    s->current = NULL;
    s->selecting = 0;
    s->wait_cont = 0;

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    cmd->rc = NGX_OK;
    cmd->status = resp->status;
    cmd->code = resp->code;
    cmd->text = resp->text;

    if (resp->status == NGX_MAIL_PLUS_IMAP_OK) {
        ngx_mail_plus_imap_selected(s, cmd);
    }

    if (ngx_mail_plus_imap_call(s, cmd) != NGX_OK) {
        return NGX_DONE;
    }

    if (s->failed) {
        return NGX_DONE;
    }

    return ngx_mail_plus_imap_next(s);

bad:

    ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                  "jmap: IMAP backend %V sent an unexpected tagged answer",
                  &s->name);

    return ngx_mail_plus_imap_fail(s, "the backend's response was not "
                                   "understood");
}


/* what an untagged response tells of the session, whoever asked */

static void
ngx_mail_plus_imap_data(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_response_t *resp)
{
    ngx_uint_t                   i;
    ngx_mail_plus_imap_t        *imap;
    ngx_mail_plus_imap_value_t  *v;

    imap = &s->imap;

    if (resp->status != NGX_MAIL_PLUS_IMAP_DATA) {
        ngx_mail_plus_imap_code(s, resp->code);

    } else if (resp->name.len == 6
               && ngx_strncasecmp(resp->name.data, (u_char *) "EXISTS", 6)
                  == 0)
    {
        if (s->selecting || imap->selected.len) {
            imap->exists = resp->number;
        }

    } else if (resp->name.len == 7
               && ngx_strncasecmp(resp->name.data, (u_char *) "EXPUNGE", 7)
                  == 0)
    {
        if (imap->exists) {
            imap->exists--;
        }

    } else if (resp->name.len == 8
               && ngx_strncasecmp(resp->name.data, (u_char *) "VANISHED", 8)
                  == 0)
    {
        ngx_mail_plus_imap_vanished(s, resp->data);

    } else if (resp->name.len == 10
               && ngx_strncasecmp(resp->name.data, (u_char *) "CAPABILITY",
                                  10) == 0)
    {
        ngx_mail_plus_imap_caps(s, resp->data, 0);

    } else if (resp->name.len == 7
               && ngx_strncasecmp(resp->name.data, (u_char *) "ENABLED", 7)
                  == 0)
    {
        for (i = 0; (v = ngx_mail_plus_imap_item(resp->data, i)); i++) {
            if (ngx_mail_plus_imap_atom_is(v, "CONDSTORE", 9)) {
                imap->condstore = 1;

            } else if (ngx_mail_plus_imap_atom_is(v, "QRESYNC", 7)) {
                imap->qresync = 1;
                imap->condstore = 1;
            }
        }
    }
}


/* QRESYNC's "* VANISHED uid-set": so many fewer (EARLIER: none now) */

static void
ngx_mail_plus_imap_vanished(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_value_t *data)
{
    u_char                      *p, *last;
    uint64_t                     n, a, b, *cur;
    ngx_str_t                    set;
    ngx_mail_plus_imap_t        *imap;
    ngx_mail_plus_imap_value_t  *v;

    imap = &s->imap;
    v = ngx_mail_plus_imap_item(data, 0);

    if (v == NULL || v->type == NGX_MAIL_PLUS_IMAP_LIST
        || ngx_mail_plus_imap_string(v, &set) != NGX_OK)
    {
        return;
    }

    n = 0;
    a = 0;
    b = 0;
    cur = &a;
    last = set.data + set.len;

    for (p = set.data; p <= last; p++) {

        if (p < last && *p >= '0' && *p <= '9') {
            if (*cur > 1000000000) {
                return;
            }

            *cur = *cur * 10 + (*p - '0');
            continue;
        }

        if (p < last && *p == ':' && cur == &a) {
            cur = &b;
            continue;
        }

        if (p < last && *p != ',') {
            return;
        }

        n += (cur == &b) ? (a > b ? a - b : b - a) + 1 : 1;
        a = 0;
        b = 0;
        cur = &a;
    }

    imap->exists = (imap->exists > n) ? imap->exists - n : 0;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: %uL vanished, %uL left", n, imap->exists);
}


/* a response code that tells of the session: capabilities, the mailbox */

static void
ngx_mail_plus_imap_code(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_value_t *code)
{
    uint64_t                     n;
    ngx_mail_plus_imap_t        *imap;
    ngx_mail_plus_imap_value_t  *name, *arg;

    name = ngx_mail_plus_imap_item(code, 0);

    if (name == NULL) {
        return;
    }

    imap = &s->imap;
    arg = ngx_mail_plus_imap_item(code, 1);

    if (ngx_mail_plus_imap_atom_is(name, "CAPABILITY", 10)) {
        ngx_mail_plus_imap_caps(s, code, 1);
        return;
    }

    if (ngx_mail_plus_imap_atom_is(name, "READ-ONLY", 9)) {
        imap->read_only = 1;
        return;
    }

    if (ngx_mail_plus_imap_atom_is(name, "READ-WRITE", 10)) {
        imap->read_only = 0;
        return;
    }

    if (!s->selecting && imap->selected.len == 0) {
        return;
    }

    if (ngx_mail_plus_imap_atom_is(name, "NOMODSEQ", 8)) {
        imap->highestmodseq = 0;
        return;
    }

    if (ngx_mail_plus_imap_number(arg, &n) != NGX_OK) {
        return;
    }

    if (ngx_mail_plus_imap_atom_is(name, "UIDVALIDITY", 11)) {
        imap->uidvalidity = n;

    } else if (ngx_mail_plus_imap_atom_is(name, "UIDNEXT", 7)) {
        imap->uidnext = n;

    } else if (ngx_mail_plus_imap_atom_is(name, "HIGHESTMODSEQ", 13)) {
        imap->highestmodseq = n;
    }
}


static void
ngx_mail_plus_imap_caps(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_value_t *list, ngx_uint_t from)
{
    ngx_uint_t                   i;
    ngx_mail_plus_imap_t        *imap;
    ngx_mail_plus_imap_value_t  *v;

    imap = &s->imap;

    imap->literal_plus = 0;
    imap->special_use = 0;
    imap->binary = 0;
    imap->move = 0;
    imap->uidplus = 0;
    imap->esearch = 0;
    imap->list_status = 0;
    s->literal_minus = 0;
    s->offer_condstore = 0;
    s->offer_qresync = 0;
    s->sasl_ir = 0;
    s->oauthbearer = 0;
    s->xoauth2 = 0;
    s->login_disabled = 0;

    for (i = from; (v = ngx_mail_plus_imap_item(list, i)); i++) {

#define ngx_imap_cap(name)                                                   \
    ngx_mail_plus_imap_atom_is(v, name, sizeof(name) - 1)

        if (ngx_imap_cap("LITERAL+")) {
            imap->literal_plus = 1;

        } else if (ngx_imap_cap("LITERAL-")) {
            imap->literal_plus = 1;
            s->literal_minus = 1;

        } else if (ngx_imap_cap("CONDSTORE")) {
            s->offer_condstore = 1;

        } else if (ngx_imap_cap("QRESYNC")) {
            s->offer_qresync = 1;

        } else if (ngx_imap_cap("SPECIAL-USE")) {
            imap->special_use = 1;

        } else if (ngx_imap_cap("BINARY")) {
            imap->binary = 1;

        } else if (ngx_imap_cap("MOVE")) {
            imap->move = 1;

        } else if (ngx_imap_cap("UIDPLUS")) {
            imap->uidplus = 1;

        } else if (ngx_imap_cap("ESEARCH")) {
            imap->esearch = 1;

        } else if (ngx_imap_cap("LIST-STATUS")) {
            imap->list_status = 1;

        } else if (ngx_imap_cap("SASL-IR")) {
            s->sasl_ir = 1;

        } else if (ngx_imap_cap("AUTH=OAUTHBEARER")) {
            s->oauthbearer = 1;

        } else if (ngx_imap_cap("AUTH=XOAUTH2")) {
            s->xoauth2 = 1;

        } else if (ngx_imap_cap("LOGINDISABLED")) {
            s->login_disabled = 1;
        }

#undef ngx_imap_cap
    }

    s->caps = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: capabilities read, LITERAL+ %ui, "
                   "LIST-STATUS %ui", (ngx_uint_t) imap->literal_plus,
                   (ngx_uint_t) imap->list_status);
}


/* SELECT, EXAMINE, CLOSE or UNSELECT answered OK */

static void
ngx_mail_plus_imap_selected(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_mail_plus_imap_t  *imap;

    imap = &s->imap;

    if (cmd->unselect) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: mailbox closed");
        return;
    }

    if (!cmd->select) {
        return;
    }

    imap->selected.data = ngx_alloc(cmd->mailbox.len + 1, &s->log);
    if (imap->selected.data == NULL) {
        return;
    }

    ngx_memcpy(imap->selected.data, cmd->mailbox.data, cmd->mailbox.len);
    imap->selected.len = cmd->mailbox.len;

    if (cmd->examine) {
        imap->read_only = 1;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: mailbox selected, exists %uL, "
                   "uidvalidity %uL, uidnext %uL, highestmodseq %uL",
                   imap->exists, imap->uidvalidity, imap->uidnext,
                   imap->highestmodseq);
}


/* the login's next step */

static ngx_int_t
ngx_mail_plus_imap_step(ngx_mail_plus_imap_session_t *s)
{
    ngx_int_t                  rc;
    ngx_mail_plus_imap_cmd_t  *cmd;

    if (s->caps && s->logged_in
        && (s->enabled || !(s->offer_condstore || s->offer_qresync)))
    {
        ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: session to %V of \"%V\" ready",
                       &s->name, &s->login);

        ngx_mail_plus_imap_wipe(s);
        s->route = NULL;
        s->state = NGX_MAIL_PLUS_IMAP_READY;

        return ngx_mail_plus_imap_next(s);
    }

    cmd = ngx_mail_plus_imap_cmd(&s->imap, s->pool);
    if (cmd == NULL) {
        return ngx_mail_plus_imap_fail(s, "out of memory");
    }

    cmd->internal = 1;
    cmd->handler = ngx_mail_plus_imap_internal_handler;

    if (!s->caps) {
        cmd->data = (void *) NGX_MAIL_PLUS_IMAP_STEP_CAPABILITY;
        rc = ngx_mail_plus_imap_cmd_text(cmd, "CAPABILITY");

    } else if (!s->logged_in) {
        cmd->data = (void *) NGX_MAIL_PLUS_IMAP_STEP_LOGIN;
        rc = s->token ? ngx_mail_plus_imap_authenticate(s, cmd)
                      : ngx_mail_plus_imap_login(s, cmd);

    } else {
        cmd->data = (void *) NGX_MAIL_PLUS_IMAP_STEP_ENABLE;
        rc = ngx_mail_plus_imap_cmd_text(cmd, "ENABLE%s%s",
                                         s->offer_condstore
                                         ? " CONDSTORE" : "",
                                         s->offer_qresync ? " QRESYNC" : "");
        s->enabled = 1;
    }

    if (rc == NGX_DECLINED) {
        return ngx_mail_plus_imap_fail(s, "the backend refused the login");
    }

    if (rc != NGX_OK) {
        return ngx_mail_plus_imap_fail(s, "out of memory");
    }

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: login step sent");

    /* before the caller's commands */

    cmd->next = s->head;
    s->head = cmd;

    if (s->tail == NULL) {
        s->tail = cmd;
    }

    return ngx_mail_plus_imap_next(s);
}


static ngx_int_t
ngx_mail_plus_imap_login(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd)
{
    if (s->login_disabled) {
        ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                      "jmap: IMAP backend %V has LOGINDISABLED", &s->name);
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: LOGIN of \"%V\"", &s->login);

    if (ngx_mail_plus_imap_cmd_text(cmd, "LOGIN ") != NGX_OK
        || ngx_mail_plus_imap_cmd_string(cmd, &s->login) != NGX_OK
        || ngx_mail_plus_imap_cmd_text(cmd, " ") != NGX_OK
        || ngx_mail_plus_imap_cmd_string(cmd, &s->secret) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* after a token login: the pool's master user, or the token */

static ngx_int_t
ngx_mail_plus_imap_authenticate(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd)
{
    u_char                  *p, *q, *last;
    ngx_uint_t               mech;
    ngx_mail_plus_pool_t    *pool;
    ngx_mail_plus_route_t   *route;
    ngx_mail_plus_server_t  *server;

    route = s->route;
    pool = route->pool;

    if (pool->token_login == NGX_MAIL_PLUS_TOKEN_LOGIN_MASTER) {
        return ngx_mail_plus_imap_master(s, cmd, pool);
    }

    if (s->oauthbearer) {
        mech = NGX_MAIL_PLUS_SASL_OAUTHBEARER;

    } else if (s->xoauth2) {
        mech = NGX_MAIL_PLUS_SASL_XOAUTH2;

    } else {
        ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                      "jmap: IMAP backend %V offers no token mechanism "
                      "(OAUTHBEARER, XOAUTH2) for the token login of \"%V\"",
                      &s->name, &s->login);
        return NGX_DECLINED;
    }

    /* a bearer token is printable: no ^A can end a field early */

    last = s->secret.data + s->secret.len;

    for (p = s->secret.data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return NGX_DECLINED;
        }
    }

    if (s->secret.len == 0) {
        return NGX_DECLINED;
    }

    server = s->server;

    p = ngx_pnalloc(s->pool, ngx_mail_plus_token_sasl_len(&s->login,
                                                          &server->host,
                                                          &s->secret));
    if (p == NULL) {
        return NGX_ERROR;
    }

    q = ngx_mail_plus_token_sasl(s->pool, mech, &s->login, &server->host,
                                 s->port, &s->secret, p);
    if (q == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: AUTHENTICATE %s of \"%V\"",
                   mech == NGX_MAIL_PLUS_SASL_OAUTHBEARER
                   ? "OAUTHBEARER" : "XOAUTH2", &s->login);

    cmd->auth = 1;

    if (ngx_mail_plus_imap_cmd_text(cmd, "AUTHENTICATE %s",
                                    mech == NGX_MAIL_PLUS_SASL_OAUTHBEARER
                                    ? "OAUTHBEARER" : "XOAUTH2")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (s->sasl_ir) {
        if (ngx_mail_plus_imap_part(cmd, (u_char *) " ", 1, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_mail_plus_imap_part(cmd, (u_char *) CRLF, 2, 1)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_mail_plus_imap_part(cmd, p, q - p, 0);
}


/* "LOGIN login*master password": Dovecot's master user convention */

static ngx_int_t
ngx_mail_plus_imap_master(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd, ngx_mail_plus_pool_t *pool)
{
    ngx_str_t  login;

    login.len = s->login.len + 1 + pool->master_user.len;
    login.data = ngx_pnalloc(s->pool, login.len);
    if (login.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(login.data, "%V*%V", &s->login, &pool->master_user);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: LOGIN of \"%V\" as master user \"%V\"",
                   &s->login, &pool->master_user);

    if (ngx_mail_plus_imap_cmd_text(cmd, "LOGIN ") != NGX_OK
        || ngx_mail_plus_imap_cmd_string(cmd, &login) != NGX_OK
        || ngx_mail_plus_imap_cmd_text(cmd, " ") != NGX_OK
        || ngx_mail_plus_imap_cmd_string(cmd, &pool->master_password)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_mail_plus_imap_internal_handler(ngx_mail_plus_imap_cmd_t *cmd)
{
    uintptr_t                      step;
    ngx_mail_plus_imap_session_t  *s;

    s = cmd->imap->priv;
    step = (uintptr_t) cmd->data;

    if (cmd->rc != NGX_OK) {
        return;
    }

    switch (step) {

    case NGX_MAIL_PLUS_IMAP_STEP_CAPABILITY:
        if (cmd->status != NGX_MAIL_PLUS_IMAP_OK || !s->caps) {
            (void) ngx_mail_plus_imap_fail(s, "the backend refused "
                                           "CAPABILITY");
            return;
        }

        break;

    case NGX_MAIL_PLUS_IMAP_STEP_LOGIN:
        if (cmd->status != NGX_MAIL_PLUS_IMAP_OK) {
            ngx_log_error(NGX_LOG_ERR, &s->log, 0,
                          "jmap: IMAP backend %V refused the login of "
                          "\"%V\"", &s->name, &s->login);
            (void) ngx_mail_plus_imap_fail(s, "the backend refused the login");
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: \"%V\" logged in", &s->login);

        s->logged_in = 1;

        /* the capabilities change with the login, unless the answer told */

        if (!ngx_mail_plus_imap_atom_is(ngx_mail_plus_imap_item(cmd->code, 0),
                                        "CAPABILITY", 10))
        {
            s->caps = 0;
        }

        break;

    default: /* ENABLE: refused, it goes on without */
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: ENABLE answered, status %ui",
                       (ngx_uint_t) cmd->status);
        break;
    }

    (void) ngx_mail_plus_imap_step(s);
}


/* the next command of the queue, if none is on the wire */

static ngx_int_t
ngx_mail_plus_imap_next(ngx_mail_plus_imap_session_t *s)
{
    ngx_mail_plus_imap_t      *imap;
    ngx_mail_plus_imap_cmd_t  *cmd;

    if (s->current || s->head == NULL || s->failed) {
        return NGX_OK;
    }

    if (s->state != NGX_MAIL_PLUS_IMAP_READY && !s->head->internal) {
        return NGX_OK;
    }

    cmd = s->head;
    s->head = cmd->next;

    if (s->head == NULL) {
        s->tail = NULL;
    }

    cmd->next = NULL;
    cmd->tag = ++s->tag;

    s->current = cmd;
    s->part = 0;
    s->out = NULL;
    s->tag_sent = 0;
    s->crlf_sent = 0;
    s->wait_cont = 0;

    if (cmd->prepare) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: preparing J%ui", cmd->tag);

        if (cmd->prepare(cmd) != NGX_OK) {
            return ngx_mail_plus_imap_fail(s, "a command could not be made");
        }
    }

    if (cmd->select || cmd->unselect) {
        imap = &s->imap;

        if (imap->selected.data) {
            ngx_free(imap->selected.data);
        }

        ngx_str_null(&imap->selected);
        imap->read_only = 0;
        imap->uidvalidity = 0;
        imap->uidnext = 0;
        imap->highestmodseq = 0;
        imap->exists = 0;
        s->selecting = cmd->select;
    }

    ngx_add_timer(&s->timer, s->conf->timeout);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: sending J%ui, timer set", cmd->tag);

    return ngx_mail_plus_imap_write(s);
}


/* the current command's text, up to a synchronizing literal */

static ngx_int_t
ngx_mail_plus_imap_write(ngx_mail_plus_imap_session_t *s)
{
    ngx_buf_t                  *b;
    ngx_uint_t                  sync;
    ngx_chain_t                *cl, **ll;
    ngx_connection_t           *c;
    ngx_mail_plus_imap_cmd_t   *cmd;
    ngx_mail_plus_imap_part_t  *parts;

    c = s->connection;
    cmd = s->current;

    if (s->out == NULL) {
        ll = &s->out;
        parts = cmd->parts.elts;
        sync = 0;

        while (!s->tag_sent || s->part < cmd->parts.nelts || !s->crlf_sent) {

            /* an empty literal's data: nothing to send */

            if (s->tag_sent && s->part < cmd->parts.nelts
                && parts[s->part].data.len == 0 && !parts[s->part].sync)
            {
                s->part++;
                continue;
            }

            b = ngx_calloc_buf(cmd->pool);
            cl = ngx_alloc_chain_link(cmd->pool);
            if (b == NULL || cl == NULL) {
                return ngx_mail_plus_imap_fail(s, "out of memory");
            }

            b->memory = 1;

            if (!s->tag_sent) {
                b->pos = ngx_pnalloc(cmd->pool, NGX_INT_T_LEN + 2);
                if (b->pos == NULL) {
                    return ngx_mail_plus_imap_fail(s, "out of memory");
                }

                b->last = ngx_sprintf(b->pos, "J%ui ", cmd->tag);
                s->tag_sent = 1;

            } else if (s->part < cmd->parts.nelts) {
                b->pos = parts[s->part].data.data;
                b->last = b->pos + parts[s->part].data.len;
                sync = parts[s->part].sync;
                s->part++;

            } else {
                b->pos = (u_char *) CRLF;
                b->last = b->pos + 2;
                s->crlf_sent = 1;
            }

            b->start = b->pos;
            b->end = b->last;

            cl->buf = b;
            cl->next = NULL;
            *ll = cl;
            ll = &cl->next;

            if (sync) {
                break;
            }
        }

        s->wait_cont = sync;
    }

    s->out = c->send_chain(c, s->out, 0);

    /* a long literal (APPEND) has the timeout for each part that goes */

    if (s->timer.timer_set) {
        ngx_add_timer(&s->timer, s->conf->timeout);
    }

    if (s->out == NGX_CHAIN_ERROR) {
        s->out = NULL;
        return ngx_mail_plus_imap_fail(s, "the connection failed");
    }

    if (s->out) {
        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            return ngx_mail_plus_imap_fail(s, "the connection failed");
        }

        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: J%ui sent%s", cmd->tag,
                   s->wait_cont ? ", waiting for \"+\"" : "");

    return NGX_OK;
}


ngx_mail_plus_imap_cmd_t *
ngx_mail_plus_imap_cmd(ngx_mail_plus_imap_t *imap, ngx_pool_t *pool)
{
    ngx_mail_plus_imap_cmd_t  *cmd;

    cmd = ngx_pcalloc(pool, sizeof(ngx_mail_plus_imap_cmd_t));
    if (cmd == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmd->parts, pool, 4,
                       sizeof(ngx_mail_plus_imap_part_t))
        != NGX_OK)
    {
        return NULL;
    }

    cmd->imap = imap;
    cmd->pool = pool;
    cmd->rc = NGX_ERROR;

    return cmd;
}


static ngx_int_t
ngx_mail_plus_imap_part(ngx_mail_plus_imap_cmd_t *cmd, u_char *data,
    size_t len, ngx_uint_t sync)
{
    ngx_mail_plus_imap_part_t  *part;

    part = ngx_array_push(&cmd->parts);
    if (part == NULL) {
        return NGX_ERROR;
    }

    part->data.data = data;
    part->data.len = len;
    part->sync = sync;

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_imap_cmd_text(ngx_mail_plus_imap_cmd_t *cmd,
    const char *fmt, ...)
{
    u_char   *buf, *p, *last;
    size_t    size;
    va_list   args;

    for (size = 256; /* void */; size *= 2) {
        if (size > 16 * 1024 * 1024) {
            return NGX_ERROR;
        }

        buf = ngx_pnalloc(cmd->pool, size);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        va_start(args, fmt);
        last = ngx_vslprintf(buf, buf + size, fmt, args);
        va_end(args);

        if (last < buf + size) {
            break;
        }
    }

    for (p = buf; p < last; p++) {
        if (*p == CR || *p == LF || *p == '\0') {
            return NGX_ERROR;
        }
    }

    if (cmd->parts.nelts == 0) {

#define ngx_imap_verb(v)                                                     \
    ((size_t) (last - buf) >= sizeof(v) - 1                                  \
     && ngx_strncasecmp(buf, (u_char *) v, sizeof(v) - 1) == 0)

        if (ngx_imap_verb("SELECT ")) {
            cmd->select = 1;

        } else if (ngx_imap_verb("EXAMINE ")) {
            cmd->select = 1;
            cmd->examine = 1;

        } else if (ngx_imap_verb("CLOSE") || ngx_imap_verb("UNSELECT")) {
            cmd->unselect = 1;
        }

#undef ngx_imap_verb
    }

    return ngx_mail_plus_imap_part(cmd, buf, last - buf, 0);
}


ngx_int_t
ngx_mail_plus_imap_cmd_string(ngx_mail_plus_imap_cmd_t *cmd, ngx_str_t *s)
{
    u_char      *p, *last, *q, *d;
    ngx_uint_t   atom, quote, esc;

    atom = (s->len > 0);
    quote = 1;
    esc = 0;
    last = s->data + s->len;

    for (p = s->data; p < last; p++) {
        if (*p == '\0') {
            return NGX_DECLINED;
        }

        if (*p == CR || *p == LF || (*p >= 0x80 && !cmd->imap->utf8)) {
            quote = 0;
        }

        if (*p == '"' || *p == '\\') {
            esc++;
        }

        if (*p <= 0x20 || *p >= 0x7f || ngx_strchr("(){%*\"\\", *p)) {
            atom = 0;
        }
    }

    if (atom) {
        return ngx_mail_plus_imap_part(cmd, s->data, s->len, 0);
    }

    if (!quote) {
        return ngx_mail_plus_imap_cmd_literal(cmd, s);
    }

    d = ngx_pnalloc(cmd->pool, s->len + esc + 2);
    if (d == NULL) {
        return NGX_ERROR;
    }

    q = d;
    *q++ = '"';

    for (p = s->data; p < last; p++) {
        if (*p == '"' || *p == '\\') {
            *q++ = '\\';
        }

        *q++ = *p;
    }

    *q++ = '"';

    return ngx_mail_plus_imap_part(cmd, d, q - d, 0);
}


ngx_int_t
ngx_mail_plus_imap_cmd_mailbox(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_str_t *name)
{
    ngx_int_t  rc;
    ngx_str_t  encoded;

    if (cmd->imap->utf8) {
        if (ngx_mail_plus_imap_utf8_valid(name) != NGX_OK) {
            return NGX_DECLINED;
        }

        encoded = *name;

    } else {
        rc = ngx_mail_plus_imap_utf7_encode(cmd->pool, name, &encoded);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (cmd->select && cmd->mailbox.data == NULL) {
        cmd->mailbox = *name;
    }

    return ngx_mail_plus_imap_cmd_string(cmd, &encoded);
}


ngx_int_t
ngx_mail_plus_imap_cmd_literal(ngx_mail_plus_imap_cmd_t *cmd,
    ngx_str_t *data)
{
    u_char                        *p, *last;
    ngx_uint_t                     sync;
    ngx_mail_plus_imap_session_t  *s;

    s = cmd->imap->priv;

    sync = !cmd->imap->literal_plus
           || (s->literal_minus && data->len > 4096);

    p = ngx_pnalloc(cmd->pool, NGX_OFF_T_LEN + 5);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, sync ? "{%uz}" CRLF : "{%uz+}" CRLF, data->len);

    if (ngx_mail_plus_imap_part(cmd, p, last - p, sync) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_mail_plus_imap_part(cmd, data->data, data->len, 0);
}


ngx_int_t
ngx_mail_plus_imap_send(ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_mail_plus_imap_session_t  *s;

    s = cmd->imap->priv;

    cmd->next = NULL;
    cmd->rc = NGX_ERROR;

    if (s->tail) {
        s->tail->next = cmd;

    } else {
        s->head = cmd;
    }

    s->tail = cmd;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, &s->log, 0, "jmap imap: command queued");

    if (s->failed) {
        if (!s->post.posted) {
            ngx_post_event(&s->post, &ngx_posted_events);
        }

        return NGX_OK;
    }

    if (s->state == NGX_MAIL_PLUS_IMAP_READY && s->current == NULL
        && !s->connection->write->posted)
    {
        ngx_post_event(s->connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_imap_mailbox_name(ngx_mail_plus_imap_t *imap, ngx_pool_t *pool,
    ngx_str_t *name, ngx_str_t *utf8)
{
    if (imap->utf8) {
        if (ngx_mail_plus_imap_utf8_valid(name) != NGX_OK) {
            return NGX_DECLINED;
        }

        *utf8 = *name;
        return NGX_OK;
    }

    return ngx_mail_plus_imap_utf7_decode(pool, name, utf8);
}


/* a handler called; NGX_DONE if the session was released in it */

static ngx_int_t
ngx_mail_plus_imap_call(ngx_mail_plus_imap_session_t *s,
    ngx_mail_plus_imap_cmd_t *cmd)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: calling the handler of J%ui, rc %i",
                   cmd->tag, cmd->rc);

    s->calling++;
    cmd->handler(cmd);
    s->calling--;

    if (s->released && s->calling == 0) {
        ngx_mail_plus_imap_finish(s, s->keep);
        return NGX_DONE;
    }

    return NGX_OK;
}


/* the session failed: closed, every command fails; NGX_DONE */

static ngx_int_t
ngx_mail_plus_imap_fail(ngx_mail_plus_imap_session_t *s, const char *error)
{
    if (s->failed) {
        return NGX_DONE;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: session failed: %s", error);

    s->failed = 1;
    s->imap.error = error;
    s->state = NGX_MAIL_PLUS_IMAP_FAILED;

    ngx_mail_plus_imap_close_connection(s);
    ngx_mail_plus_imap_wipe(s);

    (void) ngx_mail_plus_imap_fail_queue(s);

    return NGX_DONE;
}


static ngx_int_t
ngx_mail_plus_imap_fail_queue(ngx_mail_plus_imap_session_t *s)
{
    ngx_mail_plus_imap_cmd_t  *cmd;

    if (s->calling) {
        /* from a handler: the rest are failed from an event */

        if ((s->current || s->head) && !s->post.posted) {
            ngx_post_event(&s->post, &ngx_posted_events);
        }

        return NGX_OK;
    }

    for ( ;; ) {
        cmd = s->current;

        if (cmd) {
            s->current = NULL;

        } else {
            cmd = s->head;

            if (cmd == NULL) {
                return NGX_OK;
            }

            s->head = cmd->next;

            if (s->head == NULL) {
                s->tail = NULL;
            }
        }

        cmd->rc = NGX_ERROR;

        if (ngx_mail_plus_imap_call(s, cmd) != NGX_OK) {
            return NGX_DONE;
        }
    }
}


void
ngx_mail_plus_imap_release(ngx_mail_plus_imap_t *imap, ngx_uint_t keep)
{
    ngx_mail_plus_imap_session_t  *s;

    s = imap->priv;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: released, keep %ui", keep);

    if (s->calling) {
        s->released = 1;
        s->keep = keep;
        s->head = NULL;
        s->tail = NULL;
        return;
    }

    ngx_mail_plus_imap_finish(s, keep);
}


static void
ngx_mail_plus_imap_finish(ngx_mail_plus_imap_session_t *s, ngx_uint_t keep)
{
    s->head = NULL;
    s->tail = NULL;
    s->released = 0;

    if (s->post.posted) {
        ngx_delete_posted_event(&s->post);
    }

    if (keep && s->state == NGX_MAIL_PLUS_IMAP_READY && !s->failed
        && !s->bye && s->current == NULL && !s->mid
        && s->in->pos == s->in->last
        && ngx_mail_plus_imap_keepalive_put(s) == NGX_OK)
    {
        return;
    }

    ngx_mail_plus_imap_close(s);
}


/* the session closed and freed */

void
ngx_mail_plus_imap_close(ngx_mail_plus_imap_session_t *s)
{
    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: session to %V closed", &s->name);

    if (s->post.posted) {
        ngx_delete_posted_event(&s->post);
    }

    ngx_mail_plus_imap_close_connection(s);
    ngx_mail_plus_imap_wipe(s);

    if (s->imap.selected.data) {
        ngx_free(s->imap.selected.data);
        ngx_str_null(&s->imap.selected);
    }

    if (s->imap.kept) {
        ngx_free(s->imap.kept);
        s->imap.kept = NULL;
    }

    if (s->imap.ahead) {
        ngx_free(s->imap.ahead);
        s->imap.ahead = NULL;
    }

    ngx_destroy_pool(s->pool);
}


static void
ngx_mail_plus_imap_close_connection(ngx_mail_plus_imap_session_t *s)
{
    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (s->connection) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                       "jmap imap: connection to %V closed", &s->name);

        ngx_close_connection(s->connection);
        s->connection = NULL;
        s->peer.connection = NULL;
    }

    s->out = NULL;
    s->mid = 0;
}


/* the password or token is not kept once the login is done */

static void
ngx_mail_plus_imap_wipe(ngx_mail_plus_imap_session_t *s)
{
    if (s->secret.len) {
        ngx_explicit_memzero(s->secret.data, s->secret.len);
        s->secret.len = 0;
    }
}
