
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * bytes a splice pipe is asked to hold: fewer, larger moves when much
 * flows; the default pipe size (64k) if the system refuses
 */

#define NGX_MAIL_PLUS_PIPE_SIZE  (1024 * 1024)


/*
 * The relay after login: bytes both ways, each direction on its own, so
 * that a full buffer one way never stops the other.  A direction reads
 * while its buffer has room and writes whatever it holds as soon as the
 * peer takes it (TCP_NODELAY on both sides: nothing waits for a delayed
 * ACK).  A buffer's memory is taken when data comes and given back when
 * it has all gone out, so an idle session holds none.  On Linux, without
 * TLS, a burst that fills the buffer goes on through a pipe with splice(2),
 * never copied to user space, and so do the bursts after it until one is
 * smaller than the buffer: then the pipe is closed.  Small replies are
 * cheaper to copy than to splice.  End of stream from
 * the client is passed on as a half-close; the session ends when the
 * backend's stream has ended and all of it reached the client.
 */


static void ngx_mail_plus_relay_handler(ngx_event_t *ev);
static ngx_int_t ngx_mail_plus_relay_pipe(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *src, ngx_connection_t *dst);
static ngx_int_t ngx_mail_plus_relay_copy(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *src, ngx_connection_t *dst);
#if (NGX_LINUX)
static ngx_int_t ngx_mail_plus_relay_splice(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *src, ngx_connection_t *dst);
static void ngx_mail_plus_relay_unpipe(ngx_mail_plus_pipe_t *p);
#endif
static void ngx_mail_plus_relay_shutdown(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *dst);
static ngx_int_t ngx_mail_plus_relay_preload(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, u_char *data, size_t len, u_char *more,
    size_t more_len);
static void ngx_mail_plus_relay_close(void *data);


void
ngx_mail_plus_relay_start(ngx_mail_session_t *s)
{
    ngx_buf_t                  *b;
    ngx_connection_t           *c, *pc;
    ngx_pool_cleanup_t         *cln;
    ngx_mail_plus_stats_t      *stats;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    pc = ctx->peer.connection;

    c->log->action = "proxying";

    /* the relay's pipes go with the session, before its log line */

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    cln->handler = ngx_mail_plus_relay_close;
    cln->data = ctx;

    ctx->logged_in = 1;

    /* the session is open from here: the cleanup counts its end */

    stats = ngx_mail_plus_zone_stats();

    if (stats) {
        (void) ngx_atomic_fetch_add(&stats->sessions[ctx->protocol], 1);
        (void) ngx_atomic_fetch_add(&stats->active[ctx->protocol], 1);
    }

    /* the login's reply and what the backend sent after it */

    b = ctx->line;

    if (ngx_mail_plus_relay_preload(ctx, &ctx->down, ctx->reply.data,
                                    ctx->reply.len, b->pos, b->last - b->pos)
        != NGX_OK)
    {
        ngx_mail_close_connection(c);
        return;
    }

    /* what the client pipelined after its login */

    b = s->buffer;

    if (b->pos < b->last
        && ngx_mail_plus_relay_preload(ctx, &ctx->up, b->pos,
                                       b->last - b->pos, NULL, 0)
           != NGX_OK)
    {
        ngx_mail_close_connection(c);
        return;
    }

    /* the dialogue's buffers are not needed any more */

    ngx_pfree(c->pool, ctx->line->start);
    ctx->line = NULL;

    s->tag.len = 0;

    ngx_pfree(c->pool, s->buffer->start);
    s->buffer->start = NULL;
    s->buffer->pos = NULL;
    s->buffer->last = NULL;
    s->buffer->end = NULL;

    ngx_mail_plus_check_free(ctx->check);
    ctx->check = NULL;

    if (ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

#if (NGX_LINUX && NGX_MAIL_SSL)
    ctx->splice = (c->ssl == NULL);
#elif (NGX_LINUX)
    ctx->splice = 1;
#endif

    c->read->handler = ngx_mail_plus_relay_handler;
    c->write->handler = ngx_mail_plus_relay_handler;
    pc->read->handler = ngx_mail_plus_relay_handler;
    pc->write->handler = ngx_mail_plus_relay_handler;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: relay start with %V, splice %ui, "
                   "preloaded down %uz up %uz", &ctx->backend,
                   (ngx_uint_t) ctx->splice,
                   (size_t) (ctx->down.buf.last - ctx->down.buf.pos),
                   (size_t) (ctx->up.buf.last - ctx->up.buf.pos));

    if (pc->read->timer_set) {
        ngx_del_timer(pc->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_add_timer(c->read, ctx->conf->timeout);

    ngx_mail_plus_relay_handler(c->write);
}


static ngx_int_t
ngx_mail_plus_relay_preload(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, u_char *data, size_t len, u_char *more,
    size_t more_len)
{
    size_t      size;
    ngx_buf_t  *b;

    b = &p->buf;

    size = ngx_max(ctx->conf->buffer_size, len + more_len);

    b->start = ngx_palloc(ctx->session->connection->pool, size);
    if (b->start == NULL) {
        return NGX_ERROR;
    }

    b->end = b->start + size;
    b->pos = b->start;
    b->last = ngx_cpymem(b->start, data, len);

    if (more_len) {
        b->last = ngx_cpymem(b->last, more, more_len);
    }

    return NGX_OK;
}


static void
ngx_mail_plus_relay_handler(ngx_event_t *ev)
{
    ngx_int_t                   rc;
    ngx_connection_t           *c, *pc, *ec;
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ec = ev->data;
    s = ec->data;
    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    pc = ctx->peer.connection;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "session idle timed out");
        c->timedout = 1;
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_TIMEOUT);
        return;
    }

    rc = ngx_mail_plus_relay_pipe(ctx, &ctx->up, c, pc);

    if (rc == NGX_ERROR) {
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_ERROR);
        return;
    }

    rc = ngx_mail_plus_relay_pipe(ctx, &ctx->down, pc, c);

    if (rc == NGX_ERROR) {
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_ERROR);
        return;
    }

    if (ctx->down.eof && ctx->down.buf.pos == ctx->down.buf.last
#if (NGX_LINUX)
        && ctx->down.piped == 0
#endif
       )
    {
        ngx_log_debug4(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: relay closed by the %s, up %O down %O, "
                       "pipes %ui",
                       ctx->up.eof ? "client" : "backend",
                       ctx->up.bytes, ctx->down.bytes,
                       (ngx_uint_t) (ctx->up.spliced + ctx->down.spliced));

        ngx_mail_plus_proxy_finalize(s, ctx->up.eof
                                        ? NGX_MAIL_PLUS_END_CLIENT
                                        : NGX_MAIL_PLUS_END_BACKEND);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK
        || ngx_handle_read_event(pc->read, 0) != NGX_OK
        || ngx_handle_write_event(c->write, 0) != NGX_OK
        || ngx_handle_write_event(pc->write, 0) != NGX_OK)
    {
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_ERROR);
        return;
    }

    ngx_add_timer(c->read, ctx->conf->timeout);
}


/* one direction: NGX_OK or NGX_ERROR */

static ngx_int_t
ngx_mail_plus_relay_pipe(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *src, ngx_connection_t *dst)
{
#if (NGX_LINUX)

    if (p->bulk && p->buf.start == NULL) {
        return ngx_mail_plus_relay_splice(ctx, p, src, dst);
    }

    if (ngx_mail_plus_relay_copy(ctx, p, src, dst) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a bulk transfer goes on through the pipe once the buffer is out */

    if (p->bulk && p->buf.start == NULL) {
        return ngx_mail_plus_relay_splice(ctx, p, src, dst);
    }

    return NGX_OK;

#else

    return ngx_mail_plus_relay_copy(ctx, p, src, dst);

#endif
}


static ngx_int_t
ngx_mail_plus_relay_copy(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *src, ngx_connection_t *dst)
{
    size_t       size;
    ssize_t      n;
    ngx_buf_t   *b;
    ngx_pool_t  *pool;

    b = &p->buf;
    pool = ctx->session->connection->pool;

    for ( ;; ) {

        if (b->pos < b->last && dst->write->ready) {

            n = dst->send(dst, b->pos, b->last - b->pos);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (n > 0) {
                b->pos += n;
                p->bytes += n;

                if (b->pos == b->last) {
                    b->pos = b->start;
                    b->last = b->start;
                }

                continue;
            }
        }

        if (p->eof || !src->read->ready) {
            break;
        }

        if (p->bulk && b->pos == b->last) {
            break;
        }

        if (b->start == NULL) {
            size = ctx->conf->buffer_size;

            b->start = ngx_palloc(pool, size);
            if (b->start == NULL) {
                return NGX_ERROR;
            }

            b->end = b->start + size;
            b->pos = b->start;
            b->last = b->start;
        }

        if (b->last == b->end) {
            break;
        }

        n = src->recv(src, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, src->log, 0,
                           "proxy: relay: end of stream from the %s",
                           (p == &ctx->up) ? "client" : "backend");
            p->eof = 1;
            continue;
        }

#if (NGX_LINUX)
        if (ctx->splice && b->last + n == b->end && !p->bulk) {
            /* the buffer filled up: more is coming, splice it */

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, src->log, 0,
                           "proxy: relay: buffer %s full, bulk transfer",
                           (p == &ctx->up) ? "up" : "down");
            p->bulk = 1;
        }
#endif

        b->last += n;
    }

    if (b->start && b->pos == b->last) {

        /* nothing held: the memory goes back until data comes again */

        ngx_pfree(pool, b->start);
        b->start = NULL;
        b->end = NULL;
        b->pos = NULL;
        b->last = NULL;
    }

    if (p->eof && b->pos == b->last) {
        ngx_mail_plus_relay_shutdown(ctx, p, dst);
    }

    return NGX_OK;
}


#if (NGX_LINUX)

/*
 * The pipe may refuse more (EAGAIN) before NGX_MAIL_PLUS_PIPE_SIZE bytes
 * when the socket filled its pages partly: EAGAIN on reading means "the
 * socket is drained" only when the pipe was empty.  Otherwise the reading
 * goes on when the destination takes the pipe's bytes.
 */

static ngx_int_t
ngx_mail_plus_relay_splice(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *src, ngx_connection_t *dst)
{
    ssize_t    n;
    ngx_err_t  err;

    for ( ;; ) {

        if (p->piped && dst->write->ready) {

            n = splice(p->fds[0], NULL, dst->fd, NULL, p->piped,
                       SPLICE_F_MOVE|SPLICE_F_NONBLOCK);

            if (n > 0) {
                p->piped -= n;
                p->bytes += n;
                continue;
            }

            err = ngx_errno;

            if (n == 0 || err != NGX_EAGAIN) {
                ngx_connection_error(dst, err, "splice() to socket failed");
                return NGX_ERROR;
            }

            dst->write->ready = 0;
        }

        if (p->eof || !src->read->ready
            || (p->spliced && p->piped >= p->size))
        {
            break;
        }

        if (!p->spliced) {
            if (pipe2(p->fds, O_NONBLOCK|O_CLOEXEC) == -1) {
                ngx_connection_error(src, ngx_errno, "pipe2() failed");
                return NGX_ERROR;
            }

            p->spliced = 1;
            p->size = 65536;

            n = fcntl(p->fds[1], F_SETPIPE_SZ, NGX_MAIL_PLUS_PIPE_SIZE);

            if (n > 0) {
                p->size = n;
            }

            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, src->log, 0,
                           "proxy: relay: pipe %s of %uz bytes opened",
                           (p == &ctx->up) ? "up" : "down", p->size);
        }

        n = splice(src->fd, NULL, p->fds[1], NULL,
                   p->size - p->piped,
                   SPLICE_F_MOVE|SPLICE_F_NONBLOCK);

        if (n > 0) {
            p->piped += n;
            p->burst += n;
            continue;
        }

        if (n == 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, src->log, 0,
                           "proxy: relay: end of stream from the %s",
                           (p == &ctx->up) ? "client" : "backend");
            p->eof = 1;
            continue;
        }

        err = ngx_errno;

        if (err != NGX_EAGAIN) {
            ngx_connection_error(src, err, "splice() from socket failed");
            return NGX_ERROR;
        }

        if (p->piped == 0) {
            src->read->ready = 0;
        }

        break;
    }

    if (p->piped == 0) {

        /*
         * the burst is over; after a small one the transfer has ended and
         * replies are copied again, without a pipe
         */

        if (p->burst < ctx->conf->buffer_size || p->eof) {
            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, src->log, 0,
                           "proxy: relay: pipe %s closed after %uz bytes",
                           (p == &ctx->up) ? "up" : "down", p->burst);
            p->bulk = 0;
            ngx_mail_plus_relay_unpipe(p);
        }

        p->burst = 0;

        if (p->eof) {
            ngx_mail_plus_relay_shutdown(ctx, p, dst);
        }
    }

    return NGX_OK;
}


static void
ngx_mail_plus_relay_unpipe(ngx_mail_plus_pipe_t *p)
{
    if (!p->spliced) {
        return;
    }

    p->spliced = 0;

    (void) close(p->fds[0]);
    (void) close(p->fds[1]);
}

#endif


/* the client's end of stream, passed on to the backend */

static void
ngx_mail_plus_relay_shutdown(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_mail_plus_pipe_t *p, ngx_connection_t *dst)
{
    if (p->shut || p == &ctx->down) {

        /* the backend's end of stream ends the session: no half-close */

        return;
    }

    p->shut = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, dst->log, 0,
                   "proxy: relay: the client's end of stream passed on");

    if (ngx_shutdown_socket(dst->fd, NGX_WRITE_SHUTDOWN) == -1) {
        ngx_connection_error(dst, ngx_socket_errno,
                             ngx_shutdown_socket_n " failed");
    }
}


/* the pipes, when the session goes */

static void
ngx_mail_plus_relay_close(void *data)
{
#if (NGX_LINUX)
    ngx_mail_plus_proxy_ctx_t *ctx = data;

    ngx_mail_plus_relay_unpipe(&ctx->up);
    ngx_mail_plus_relay_unpipe(&ctx->down);
#endif
}
