
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include "ngx_mail_plus_imap_session.h"


/*
 * The per-worker cache of idle, logged-in IMAP sessions of the JMAP
 * endpoint, keyed by the backend server, its port and the backend login.
 * A session is kept for "keepalive_timeout" after its request let it go,
 * at most "keepalive" of them (the oldest goes first).  A kept session
 * the backend speaks on or closes (BYE, an idle timeout of its own) is
 * dropped; so is one nginx wants back (c->close: shutdown, or out of
 * connections).
 */


static void ngx_mail_plus_imap_keepalive_handler(ngx_event_t *rev);
static void ngx_mail_plus_imap_keepalive_dummy(ngx_event_t *wev);


static ngx_queue_t  ngx_mail_plus_imap_kept;
static ngx_uint_t   ngx_mail_plus_imap_nkept;


ngx_mail_plus_imap_session_t *
ngx_mail_plus_imap_keepalive_get(void *server, in_port_t port,
    ngx_str_t *login, ngx_log_t *log)
{
    ngx_queue_t                   *q;
    ngx_connection_t              *c;
    ngx_mail_plus_imap_session_t  *s;

    if (ngx_mail_plus_imap_nkept == 0) {
        return NULL;
    }

    for (q = ngx_queue_last(&ngx_mail_plus_imap_kept);
         q != ngx_queue_sentinel(&ngx_mail_plus_imap_kept);
         q = ngx_queue_prev(q))
    {
        s = ngx_queue_data(q, ngx_mail_plus_imap_session_t, queue);

        if (s->server != server || s->port != port
            || s->login.len != login->len
            || ngx_memcmp(s->login.data, login->data, login->len) != 0)
        {
            continue;
        }

        ngx_queue_remove(q);
        ngx_mail_plus_imap_nkept--;

        c = s->connection;
        c->idle = 0;
        ngx_reusable_connection(c, 0);

        c->read->handler = ngx_mail_plus_imap_read_handler;
        c->write->handler = ngx_mail_plus_imap_write_handler;

        if (s->timer.timer_set) {
            ngx_del_timer(&s->timer);
        }

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, log, 0,
                       "jmap imap: kept session to %V of \"%V\" taken, "
                       "%ui left", &s->name, &s->login,
                       ngx_mail_plus_imap_nkept);

        return s;
    }

    return NULL;
}


/* NGX_OK: kept; NGX_DECLINED: the caller closes it */

ngx_int_t
ngx_mail_plus_imap_keepalive_put(ngx_mail_plus_imap_session_t *s)
{
    u_char                         buf[1];
    ssize_t                        n;
    ngx_queue_t                   *q;
    ngx_connection_t              *c;
    ngx_mail_plus_imap_session_t  *old;

    if (s->conf->keepalive == 0 || s->connection == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_mail_plus_imap_kept.next == NULL) {
        ngx_queue_init(&ngx_mail_plus_imap_kept);
    }

    c = s->connection;

    /* nothing may be waiting to be read: it would be a response to none */

    if (c->read->ready) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n != -1 || ngx_socket_errno != NGX_EAGAIN) {
            return NGX_DECLINED;
        }

        c->read->ready = 0;
    }

    while (ngx_mail_plus_imap_nkept >= s->conf->keepalive) {
        q = ngx_queue_head(&ngx_mail_plus_imap_kept);
        old = ngx_queue_data(q, ngx_mail_plus_imap_session_t, queue);
        ngx_mail_plus_imap_keepalive_drop(old, "the oldest, the cache full");
    }

    s->state = NGX_MAIL_PLUS_IMAP_KEPT;
    s->spare = 0;

    /* the request's log goes with the request */

    s->log.connection = 0;

    c->read->handler = ngx_mail_plus_imap_keepalive_handler;
    c->write->handler = ngx_mail_plus_imap_keepalive_dummy;
    c->idle = 1;
    ngx_reusable_connection(c, 1);

    ngx_add_timer(&s->timer, s->conf->keepalive_timeout);

    ngx_queue_insert_tail(&ngx_mail_plus_imap_kept, &s->queue);
    ngx_mail_plus_imap_nkept++;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: session to %V of \"%V\" kept, %ui kept",
                   &s->name, &s->login, ngx_mail_plus_imap_nkept);

    return NGX_OK;
}


static void
ngx_mail_plus_imap_keepalive_handler(ngx_event_t *rev)
{
    u_char                         buf[1];
    ssize_t                        n;
    ngx_connection_t              *c;
    ngx_mail_plus_imap_session_t  *s;

    c = rev->data;
    s = c->data;

    if (c->close) {
        ngx_mail_plus_imap_keepalive_drop(s, "nginx wants it");
        return;
    }

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        rev->ready = 0;

        if (ngx_handle_read_event(rev, 0) == NGX_OK) {
            return;
        }
    }

    ngx_mail_plus_imap_keepalive_drop(s, n == 0 ? "closed by the backend"
                                             : "the backend spoke");
}


void
ngx_mail_plus_imap_keepalive_drop(ngx_mail_plus_imap_session_t *s,
    const char *why)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, &s->log, 0,
                   "jmap imap: kept session to %V dropped: %s",
                   &s->name, why);

    ngx_queue_remove(&s->queue);
    ngx_mail_plus_imap_nkept--;

    ngx_mail_plus_imap_close(s);
}


static void
ngx_mail_plus_imap_keepalive_dummy(ngx_event_t *wev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, wev->log, 0,
                   "jmap imap: write event on a kept session");
}
