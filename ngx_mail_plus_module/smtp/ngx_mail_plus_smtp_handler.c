
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus.h"
#include "ngx_mail_plus_smtp.h"
#include "ngx_mail_plus_smtp_session.h"


/*
 * The SMTP store-and-forward session: the whole dialogue ends in nginx;
 * each message is streamed to a temporary file of the spool and committed
 * (in a thread) before "250 2.0.0 Ok: queued as ID".
 *
 * Input is processed as long as it lasts, so that a pipelined client gets
 * all its replies in one write; the session waits without reading while a
 * password is checked or a message committed.
 *
 * This file holds the session itself: its start, the read, process and
 * send loop, the deadlines, the commands read and dispatched, HELO/EHLO,
 * RSET and the replies.  The commands of a transaction are in
 * ngx_mail_plus_smtp_envelope.c (MAIL, RCPT) and ngx_mail_plus_smtp_data.c
 * (DATA, BDAT), AUTH in ngx_mail_plus_smtp_auth.c; they call back the
 * helpers ngx_mail_plus_smtp_session.h declares.
 */


#define NGX_MAIL_PLUS_SMTP_OUT_SIZE     4096
#define NGX_MAIL_PLUS_SMTP_OUT_SPARE    1024   /* the longest reply */
#define NGX_MAIL_PLUS_SMTP_READ_SIZE    16384
#define NGX_MAIL_PLUS_SMTP_LOOPS        32
#define NGX_MAIL_PLUS_SMTP_JUNK         100    /* NOOP, RSET, VRFY, HELP */


#if (NGX_DEBUG)

/* for the debug log: the states and the verbs by their numbers */

static char  *ngx_mail_plus_smtp_states[] = {
    "command", "auth plain", "auth login username", "auth login password",
    "auth oauthbearer", "auth xoauth2", "auth token error", "auth check",
    "auth delay", "rcpt verify", "data", "bdat", "commit", "starttls"
};

static char  *ngx_mail_plus_smtp_verb_names[] = {
    "unknown", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET",
    "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH",
    "not implemented"
};

#endif


static void ngx_mail_plus_smtp_start(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_plus_smtp_cleanup(void *data);
static void ngx_mail_plus_smtp_write_handler(ngx_event_t *wev);
static ssize_t ngx_mail_plus_smtp_recv(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_plus_smtp_wait(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static ngx_msec_t ngx_mail_plus_smtp_deadline(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_srv_conf_t *sscf);
static ngx_int_t ngx_mail_plus_smtp_process(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_smtp_flush(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_command(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line);
static void ngx_mail_plus_smtp_dispatch(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_uint_t cmd,
    ngx_str_t *arg);
static void ngx_mail_plus_smtp_helo(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg,
    ngx_uint_t esmtp);
static ngx_int_t ngx_mail_plus_smtp_limit(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_smtp_ctx_t *ctx);
static void ngx_mail_plus_smtp_count_error(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx);


void
ngx_mail_plus_smtp_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    size_t                          size;
    ngx_pool_cleanup_t             *cln;
    ngx_mail_plus_smtp_ctx_t       *ctx;
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_mail_plus_smtp_ctx_t));
    if (ctx == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_set_ctx(s, ctx, ngx_mail_plus_smtp_module);

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        ngx_mail_close_connection(c);
        return;
    }

    cln->handler = ngx_mail_plus_smtp_cleanup;
    cln->data = ctx;

    ctx->connection = c;
    ctx->since = ngx_current_msec;

    size = ngx_max(sscf->max_line_length + 2, NGX_MAIL_PLUS_SMTP_READ_SIZE);

    s->buffer = ngx_create_temp_buf(c->pool, size);
    ctx->out = ngx_create_temp_buf(c->pool, NGX_MAIL_PLUS_SMTP_OUT_SIZE);

    if (s->buffer == NULL || ctx->out == NULL
        || ngx_array_init(&s->args, c->pool, 2, sizeof(ngx_str_t)) != NGX_OK)
    {
        ngx_mail_close_connection(c);
        return;
    }

    if (sscf->trusted != NULL
        && ngx_cidr_match(c->sockaddr, sscf->trusted) == NGX_OK)
    {
        ctx->trusted = 1;
    }

    switch (ngx_mail_plus_smtp_limit(s, c, ctx)) {

    case NGX_OK:
        break;

    case NGX_BUSY:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: session refused with 421, too many");

        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "421 4.7.0 %V Error: too many "
                                     "connections from your network" CRLF,
                                     &cscf->server_name);
        ctx->quit = 1;
        ngx_mail_plus_smtp_start(s, c);
        return;

    default:
        ngx_mail_close_connection(c);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: session of %V, greeting 220, trusted: %ui",
                   &c->addr_text, (ngx_uint_t) ctx->trusted);

    ctx->out->last = ngx_sprintf(ctx->out->last, "220 %V ESMTP ready" CRLF,
                                 &cscf->server_name);

    ngx_mail_plus_smtp_start(s, c);
}


/*
 * "smtp_client_sessions": concurrent sessions from one client network
 * (ngx_mail_plus_limit.c counts them); trusted networks are not counted;
 * NGX_BUSY: over the limit
 */

static ngx_int_t
ngx_mail_plus_smtp_limit(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (sscf->client_sessions == 0 || ctx->trusted) {
        return NGX_OK;
    }

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    ctx->client_buf[0] = 's';
    ctx->client_buf[1] = ':';

    ctx->client_key.data = ctx->client_buf;
    ctx->client_key.len = 2 + ngx_mail_plus_client_key(mpcf, c->sockaddr,
                                                       ctx->client_buf + 2);

    switch (ngx_mail_plus_limit_acquire(&ctx->client_key,
                                        sscf->client_sessions, c->log))
    {
    case NGX_OK:
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: session of %V counted", &c->addr_text);
        ctx->client_limited = 1;
        return NGX_OK;

    case NGX_DONE:
        return NGX_OK;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "too many smtp sessions from the network of %V",
                      &c->addr_text);
        return NGX_BUSY;

    default:
        return NGX_ERROR;
    }
}


/* after STARTTLS: everything known before it is forgotten (RFC 3207 4.2) */

void
ngx_mail_plus_smtp_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: TLS handshake done, session begins again");

    ngx_mail_plus_smtp_reset(ctx);

    ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
    ctx->helo_len = 0;
    ctx->esmtp = 0;
    ctx->authenticated = 0;
    ctx->login.len = 0;
    ctx->skip = 0;

    s->buffer->pos = s->buffer->start;
    s->buffer->last = s->buffer->start;
    s->login.len = 0;

    ngx_mail_plus_smtp_start(s, c);
}


static void
ngx_mail_plus_smtp_start(ngx_mail_session_t *s, ngx_connection_t *c)
{
    c->log->action = "in smtp store-and-forward state";

    c->read->handler = ngx_mail_plus_smtp_auth_state;
    c->write->handler = ngx_mail_plus_smtp_write_handler;

    ngx_mail_plus_smtp_run(s, c);
}


void
ngx_mail_plus_smtp_auth_state(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;
    ngx_mail_core_srv_conf_t  *cscf;

    c = rev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    if (c->close) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: worker shutting down, reply 421");

        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "421 4.3.2 %V Service shutting down"
                                     CRLF, &cscf->server_name);
        ctx->quit = 1;

        ngx_mail_plus_smtp_run(s, c);
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (ctx->state == ngx_mail_plus_st_auth_delay) {
            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: auth delay timer fired");

            ngx_mail_plus_smtp_auth_delayed(s, ctx);

        } else {
            ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                          "client timed out");
            c->timedout = 1;

            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: read timer fired in state \"%s\", "
                           "reply 421", ngx_mail_plus_smtp_states[ctx->state]);

            cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

            ctx->out->last = ngx_sprintf(ctx->out->last,
                                         "421 4.4.2 %V Error: timeout "
                                         "exceeded" CRLF,
                                         &cscf->server_name);
            ctx->quit = 1;
        }
    }

    ngx_mail_plus_smtp_run(s, c);
}


static void
ngx_mail_plus_smtp_cleanup(void *data)
{
    ngx_mail_plus_smtp_ctx_t *ctx = data;

    /* one line a session */

    ngx_log_error(NGX_LOG_INFO, ctx->connection->log, 0,
                  "smtp session done: %ui messages queued, %ui errors%s",
                  ctx->queued, ctx->errors,
                  ctx->connection->timedout ? ", timed out" : "");

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: session closed in state \"%s\"",
                   ngx_mail_plus_smtp_states[ctx->state]);

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->rcheck) {
        ngx_mail_plus_check_free(ctx->rcheck);
        ctx->rcheck = NULL;
    }

    if (ctx->verify) {
        ngx_mail_plus_verify_cancel(ctx->verify);
        ctx->verify = NULL;
    }

    if (ctx->vpool) {
        ngx_destroy_pool(ctx->vpool);
        ctx->vpool = NULL;
    }

    if (ctx->client_limited) {
        ngx_mail_plus_limit_release(&ctx->client_key);
        ctx->client_limited = 0;
    }

    ngx_mail_plus_smtp_reset(ctx);
}


static void
ngx_mail_plus_smtp_write_handler(ngx_event_t *wev)
{
    ngx_connection_t          *c;
    ngx_mail_session_t        *s;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    c = wev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out");
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: send timer fired, closing");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return;
    }

    if (ctx->out->pos == ctx->out->last) {
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
        }

        return;
    }

    ngx_mail_plus_smtp_run(s, c);
}


/*
 * the heart of the session: process what was read, read more, send the
 * replies; at most a few rounds, then the event is posted again
 */

void
ngx_mail_plus_smtp_run(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ssize_t                    size;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_mail_plus_smtp_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_smtp_module);

    for (i = 0; i < NGX_MAIL_PLUS_SMTP_LOOPS; i++) {

        rc = ngx_mail_plus_smtp_process(s, c, ctx);

        if (rc == NGX_BUSY) {

            /* the replies fill the output buffer */

            rc = ngx_mail_plus_smtp_flush(s, c, ctx);

            if (rc == NGX_OK) {
                continue;
            }

            return;
        }

        if (rc == NGX_DONE) {
            break;
        }

        /* more input is needed */

        size = ngx_mail_plus_smtp_recv(s, c);

        if (size == NGX_AGAIN) {
            break;
        }

        if (size == NGX_ERROR || size == 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: client closed the connection in state "
                           "\"%s\"", ngx_mail_plus_smtp_states[ctx->state]);
            ngx_mail_close_connection(c);
            return;
        }

        if (ctx->state == ngx_mail_plus_st_data
            || ctx->state == ngx_mail_plus_st_bdat)
        {
            ctx->received += size;
        }
    }

    if (i == NGX_MAIL_PLUS_SMTP_LOOPS) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: input left, read event posted");
        ngx_post_event(c->read, &ngx_posted_events);
    }

    rc = ngx_mail_plus_smtp_flush(s, c, ctx);

    if (rc != NGX_OK) {
        return;
    }

    ngx_mail_plus_smtp_wait(s, c, ctx);
}


/* the input buffer made room for more, and read into */

static ssize_t
ngx_mail_plus_smtp_recv(ngx_mail_session_t *s, ngx_connection_t *c)
{
    size_t      n;
    ssize_t     size;
    ngx_buf_t  *b;

    b = s->buffer;

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;

    } else if (b->pos != b->start) {
        n = b->last - b->pos;
        ngx_memmove(b->start, b->pos, n);
        b->pos = b->start;
        b->last = b->start + n;
    }

    if (b->last == b->end) {
        /* cannot happen: the line reader discards long lines */
        b->pos = b->start;
        b->last = b->start;
    }

    size = c->recv(c, b->last, b->end - b->last);

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: recv %z", size);

    if (size > 0) {
        b->last += size;
    }

    return size;
}


/*
 * the replies are sent: the session waits for the client with the timer
 * of its state, or hands the connection to the TLS handshake
 */

static void
ngx_mail_plus_smtp_wait(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_msec_t                      timeout;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (ctx->state == ngx_mail_plus_st_starttls) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: connection handed to the TLS handshake");

        c->idle = 0;
        c->read->handler = ngx_mail_starttls_handler;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ngx_add_timer(c->read, sscf->command_timeout);

        if (c->read->ready) {
            ngx_post_event(c->read, &ngx_posted_events);
        }

        return;
    }

    switch (ctx->state) {

    case ngx_mail_plus_st_auth_delay:
        return;

    case ngx_mail_plus_st_command:
    case ngx_mail_plus_st_data:
    case ngx_mail_plus_st_bdat:
        timeout = ngx_mail_plus_smtp_deadline(ctx, sscf);
        break;

    default:
        timeout = sscf->command_timeout;
    }

    /*
     * a password check or a commit in a thread keeps its timer too: a
     * worker that shuts down gracefully waits for it
     */

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: waiting in state \"%s\", read timer %M",
                   ngx_mail_plus_smtp_states[ctx->state], timeout);

    ngx_add_timer(c->read, timeout);

    /* waiting for a command: a worker that shuts down may close it */

    c->idle = (ctx->state == ngx_mail_plus_st_command);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
    }
}


/*
 * What is left of the time a client has.  A byte does not buy time: a
 * command must be complete within smtp_command_timeout of the last reply,
 * and the message data within smtp_data_timeout of the 354 (or of the
 * reply to the last BDAT), plus a second for every smtp_data_min_rate
 * bytes received, so that a client trickling a byte every few seconds is
 * closed however long it keeps it up, and a large message sent at a fair
 * rate is not.
 */

static ngx_msec_t
ngx_mail_plus_smtp_deadline(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_srv_conf_t *sscf)
{
    ngx_msec_t  limit, elapsed;

    if (ctx->state == ngx_mail_plus_st_command) {
        limit = sscf->command_timeout;

    } else {
        limit = sscf->data_timeout;

        if (sscf->data_min_rate) {
            limit += (ngx_msec_t) ngx_min(ctx->received
                                          / (off_t) sscf->data_min_rate,
                                          86400) * 1000;
        }
    }

    elapsed = ngx_current_msec - ctx->since;

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: deadline, %M of %M ms used, %O bytes",
                   elapsed, limit, ctx->received);

    return elapsed < limit ? limit - elapsed : 1;
}


/*
 * NGX_AGAIN: input is needed; NGX_BUSY: the replies are to be sent first;
 * NGX_DONE: the session waits (a thread, QUIT, STARTTLS)
 */

static ngx_int_t
ngx_mail_plus_smtp_process(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_str_t                       line;
    ngx_buf_t                      *b;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    b = s->buffer;

    for ( ;; ) {

        if (ctx->quit) {
            return NGX_DONE;
        }

        switch (ctx->state) {
        case ngx_mail_plus_st_auth_check:
        case ngx_mail_plus_st_auth_delay:
        case ngx_mail_plus_st_rcpt_verify:
        case ngx_mail_plus_st_commit:
        case ngx_mail_plus_st_starttls:
            return NGX_DONE;
        default:
            break;
        }

        if ((size_t) (ctx->out->end - ctx->out->last)
            < NGX_MAIL_PLUS_SMTP_OUT_SPARE)
        {
            return NGX_BUSY;
        }

        if (ctx->state == ngx_mail_plus_st_data
            || ctx->state == ngx_mail_plus_st_bdat)
        {
            rc = ngx_mail_plus_smtp_content(s, c, ctx);

            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            continue;
        }

        if (b->pos == b->last) {
            return NGX_AGAIN;
        }

        rc = ngx_mail_plus_smtp_read_line(b, sscf->max_line_length, &line,
                                          &ctx->skip);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc == NGX_MAIL_PLUS_SMTP_TOO_LONG) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent too long command line");
            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: line too long, discarded");

            if (ctx->state != ngx_mail_plus_st_command) {
                ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_command);
            }

            ngx_mail_plus_smtp_error(s, ctx,
                                     "500 5.5.6 Error: line too long");
            continue;
        }

        if (ctx->state == ngx_mail_plus_st_command) {
            ngx_mail_plus_smtp_command(s, c, ctx, &line);

        } else {
            ngx_mail_plus_smtp_auth_line(s, c, ctx, &line);
        }
    }
}


static ngx_int_t
ngx_mail_plus_smtp_flush(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ssize_t                         n;
    ngx_buf_t                      *out;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    out = ctx->out;

    if (out->pos < out->last) {
        ctx->since = ngx_current_msec;
        ctx->received = 0;
    }

    while (out->pos < out->last) {

        n = c->send(c, out->pos, out->last - out->pos);

        if (n == NGX_ERROR) {
            ngx_mail_close_connection(c);
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

            ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "smtp: %uz bytes of replies wait, send timer %M",
                           (size_t) (out->last - out->pos),
                           sscf->send_timeout);

            ngx_add_timer(c->write, sscf->send_timeout);

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_mail_close_connection(c);
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        out->pos += n;
    }

    out->pos = out->start;
    out->last = out->start;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ctx->quit) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: last reply sent, closing");
        ngx_mail_close_connection(c);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_mail_plus_smtp_command(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *line)
{
    ngx_str_t   arg;
    ngx_uint_t  cmd;

    cmd = ngx_mail_plus_smtp_parse_command(line, &arg);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: command %s read, %uz bytes of argument",
                   ngx_mail_plus_smtp_verb_names[cmd], arg.len);

#if (NGX_MAIL_SSL)

    if (ngx_mail_starttls_only(s, c)) {

        switch (cmd) {
        case NGX_MAIL_PLUS_SMTP_HELO:
        case NGX_MAIL_PLUS_SMTP_EHLO:
        case NGX_MAIL_PLUS_SMTP_QUIT:
        case NGX_MAIL_PLUS_SMTP_NOOP:
        case NGX_MAIL_PLUS_SMTP_RSET:
        case NGX_MAIL_PLUS_SMTP_STARTTLS:
        case NGX_MAIL_PLUS_SMTP_UNKNOWN:
            break;

        default:
            ngx_mail_plus_smtp_error(s, ctx, "530 5.7.0 Must issue a "
                                     "STARTTLS command first");
            return;
        }
    }

#endif

    ngx_mail_plus_smtp_dispatch(s, c, ctx, cmd, &arg);

    switch (cmd) {

    case NGX_MAIL_PLUS_SMTP_RSET:
    case NGX_MAIL_PLUS_SMTP_NOOP:
    case NGX_MAIL_PLUS_SMTP_VRFY:
    case NGX_MAIL_PLUS_SMTP_HELP:

        /* many of them only keep a connection busy: they count as errors */

        if (++ctx->junk > NGX_MAIL_PLUS_SMTP_JUNK) {
            ngx_mail_plus_smtp_count_error(s, ctx);
        }

        break;

    default:
        break;
    }
}


static void
ngx_mail_plus_smtp_dispatch(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_uint_t cmd, ngx_str_t *arg)
{
    ngx_mail_core_srv_conf_t  *cscf;
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t       *sslcf;

    sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);
#endif

    switch (cmd) {

    case NGX_MAIL_PLUS_SMTP_HELO:
    case NGX_MAIL_PLUS_SMTP_EHLO:
        ngx_mail_plus_smtp_helo(s, c, ctx, arg,
                                cmd == NGX_MAIL_PLUS_SMTP_EHLO);
        return;

    case NGX_MAIL_PLUS_SMTP_MAIL:
        ngx_mail_plus_smtp_mail(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_RCPT:
        ngx_mail_plus_smtp_rcpt(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_DATA:
        ngx_mail_plus_smtp_data(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_BDAT:
        ngx_mail_plus_smtp_bdat(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_AUTH:
        ngx_mail_plus_smtp_auth(s, c, ctx, arg);
        return;

    case NGX_MAIL_PLUS_SMTP_RSET:
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: RSET, transaction open: %ui",
                       (ngx_uint_t) ctx->in_tx);
        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_reply(ctx, "250 2.0.0 Ok");
        return;

    case NGX_MAIL_PLUS_SMTP_NOOP:
        ngx_mail_plus_smtp_reply(ctx, "250 2.0.0 Ok");
        return;

    case NGX_MAIL_PLUS_SMTP_QUIT:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: QUIT, reply 221");
        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
        ctx->out->last = ngx_sprintf(ctx->out->last,
                                     "221 2.0.0 %V closing connection" CRLF,
                                     &cscf->server_name);
        ctx->quit = 1;
        return;

    case NGX_MAIL_PLUS_SMTP_VRFY:
        if (arg->len == 0) {
            ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: VRFY address");
            return;
        }

        ngx_mail_plus_smtp_reply(ctx, "252 2.0.0 Cannot VRFY user, but will "
                                 "accept message and attempt delivery");
        return;

    case NGX_MAIL_PLUS_SMTP_EXPN:
    case NGX_MAIL_PLUS_SMTP_NOTIMPL:
        ngx_mail_plus_smtp_error(s, ctx,
                                 "502 5.5.1 Error: command not implemented");
        return;

    case NGX_MAIL_PLUS_SMTP_HELP:
        ngx_mail_plus_smtp_reply(ctx, "214 2.0.0 Commands: HELO EHLO MAIL "
                                 "RCPT DATA BDAT RSET NOOP VRFY HELP QUIT "
                                 "STARTTLS AUTH");
        return;

    case NGX_MAIL_PLUS_SMTP_STARTTLS:

#if (NGX_MAIL_SSL)

        if (c->ssl) {
            ngx_mail_plus_smtp_error(s, ctx,
                                     "503 5.5.1 Error: TLS already active");
            return;
        }

        if (sslcf->starttls == NGX_MAIL_STARTTLS_OFF) {
            ngx_mail_plus_smtp_error(s, ctx,
                                     "502 5.5.1 Error: command not "
                                     "implemented");
            return;
        }

        if (arg->len) {
            ngx_mail_plus_smtp_error(s, ctx, "501 5.5.4 Syntax: STARTTLS");
            return;
        }

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "smtp: STARTTLS accepted, handshake next");

        ngx_mail_plus_smtp_reply(ctx, "220 2.0.0 Ready to start TLS");

        /* whatever the client sent after STARTTLS is not trusted */

        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;

        ngx_mail_plus_smtp_reset(ctx);
        ngx_mail_plus_smtp_set_state(ctx, ngx_mail_plus_st_starttls);
        return;

#else
        ngx_mail_plus_smtp_error(s, ctx,
                                 "502 5.5.1 Error: command not implemented");
        return;
#endif

    default:
        ngx_mail_plus_smtp_error(s, ctx,
                                 "500 5.5.2 Error: command not recognized");
        return;
    }
}


static void
ngx_mail_plus_smtp_helo(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_smtp_ctx_t *ctx, ngx_str_t *arg, ngx_uint_t esmtp)
{
    u_char                         *p, *last;
    ngx_buf_t                      *out;
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_srv_conf_t       *pscf;
    ngx_mail_plus_main_conf_t      *mpcf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t            *sslcf;
#endif

    if (arg->len == 0 || arg->len > NGX_MAIL_PLUS_SMTP_MAX_HELO) {
        ngx_mail_plus_smtp_error(s, ctx, esmtp
                                 ? "501 5.5.4 Syntax: EHLO hostname"
                                 : "501 5.5.4 Syntax: HELO hostname");
        return;
    }

    last = arg->data + arg->len;

    for (p = arg->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            ngx_mail_plus_smtp_error(s, ctx,
                                     "501 5.5.4 Error: invalid hostname");
            return;
        }
    }

    /* HELO and EHLO reset the transaction (RFC 5321 4.1.4) */

    ngx_mail_plus_smtp_reset(ctx);

    ngx_memcpy(ctx->helo, arg->data, arg->len);
    ctx->helo_len = arg->len;
    ctx->esmtp = esmtp;

    /* the name was checked above: printable ASCII only */

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "smtp: %s \"%V\" accepted, reply 250",
                   esmtp ? "EHLO" : "HELO", arg);

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);
    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    out = ctx->out;

    out->last = ngx_sprintf(out->last, "250%c%V Hello %*s [%V], "
                            "pleased to meet you" CRLF,
                            esmtp ? '-' : ' ', &cscf->server_name,
                            arg->len, arg->data, &c->addr_text);

    if (!esmtp) {
        return;
    }

    out->last = ngx_sprintf(out->last,
                            "250-SIZE %O" CRLF
                            "250-8BITMIME" CRLF
                            "250-PIPELINING" CRLF
                            "250-ENHANCEDSTATUSCODES" CRLF
                            "250-DSN" CRLF
                            "250-CHUNKING" CRLF,
                            sscf->max_message_size);

#if (NGX_MAIL_SSL)

    sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

    if (c->ssl == NULL && sslcf->starttls != NGX_MAIL_STARTTLS_OFF) {
        out->last = ngx_cpymem(out->last, "250-STARTTLS" CRLF,
                               sizeof("250-STARTTLS" CRLF) - 1);
    }

#endif

    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    if (mpcf->pools.nelts && !ctx->authenticated
        && (c->ssl || sscf->auth_plaintext))
    {
        pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_module);

        out->last = ngx_cpymem(out->last, "250-AUTH PLAIN LOGIN",
                               sizeof("250-AUTH PLAIN LOGIN") - 1);

        if (pscf->token_mechs & NGX_MAIL_PLUS_SASL_OAUTHBEARER) {
            out->last = ngx_cpymem(out->last, " OAUTHBEARER",
                                   sizeof(" OAUTHBEARER") - 1);
        }

        if (pscf->token_mechs & NGX_MAIL_PLUS_SASL_XOAUTH2) {
            out->last = ngx_cpymem(out->last, " XOAUTH2",
                                   sizeof(" XOAUTH2") - 1);
        }

        *out->last++ = CR; *out->last++ = LF;
    }

    out->last = ngx_cpymem(out->last, "250-HELP" CRLF "250 SMTPUTF8" CRLF,
                           sizeof("250-HELP" CRLF "250 SMTPUTF8" CRLF) - 1);
}


/* the end of a transaction: what it took is freed */

void
ngx_mail_plus_smtp_reset(ngx_mail_plus_smtp_ctx_t *ctx)
{
    if (ctx->msg) {
        ngx_mail_plus_queue_abort(ctx->msg);
        ctx->msg = NULL;
    }

    if (ctx->tx) {
        ngx_destroy_pool(ctx->tx);
        ctx->tx = NULL;
    }

    ctx->from.len = 0;
    ctx->rcpts = NULL;
    ctx->body = NGX_MAIL_PLUS_BODY_NONE;
    ctx->rcpt_tries = 0;
    ctx->in_tx = 0;
    ctx->smtputf8 = 0;
    ctx->bdat_used = 0;
    ctx->oversize = 0;
    ctx->spool_error = 0;
    ctx->wbuf = NULL;
    ctx->wpos = NULL;
    ctx->wend = NULL;
}


void
ngx_mail_plus_smtp_set_state(ngx_mail_plus_smtp_ctx_t *ctx,
    ngx_mail_plus_smtp_state_e state)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: state \"%s\" entered, was \"%s\"",
                   ngx_mail_plus_smtp_states[state],
                   ngx_mail_plus_smtp_states[ctx->state]);

    ctx->state = state;
}


/* the replies are ours: the code is logged, never the address in them */

void
ngx_mail_plus_smtp_reply(ngx_mail_plus_smtp_ctx_t *ctx, char *text)
{
    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->connection->log, 0,
                   "smtp: reply %*s", (size_t) 3, text);

    ctx->out->last = ngx_sprintf(ctx->out->last, "%s" CRLF, text);
}


/* a reply that counts as a client error; too many of them end the session */

void
ngx_mail_plus_smtp_error(ngx_mail_session_t *s, ngx_mail_plus_smtp_ctx_t *ctx,
    char *text)
{
    ngx_mail_plus_smtp_reply(ctx, text);
    ngx_mail_plus_smtp_count_error(s, ctx);
}


static void
ngx_mail_plus_smtp_count_error(ngx_mail_session_t *s,
    ngx_mail_plus_smtp_ctx_t *ctx)
{
    ngx_mail_core_srv_conf_t       *cscf;
    ngx_mail_plus_smtp_srv_conf_t  *sscf;

    if (ctx->quit) {
        return;
    }

    sscf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_smtp_module);

    if (++ctx->errors < sscf->max_errors) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                  "client made too many errors");

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    ctx->out->last = ngx_sprintf(ctx->out->last,
                                 "421 4.7.0 %V Error: too many errors" CRLF,
                                 &cscf->server_name);
    ctx->quit = 1;
}
