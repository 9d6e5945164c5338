
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The backend of a session: connect to the server the router chose, read
 * its greeting, log in with as few round trips as the protocol allows,
 * then hand over to the relay.  A server that refuses, times out or
 * greets wrongly is skipped for the next one on the ring; the client sees
 * an error only when none is left.
 *
 * What goes to the backend is exactly the login and the password the
 * router checked, in a form that no byte of them can end early: nothing
 * with a control character is ever sent (the router refuses them; should
 * one come here all the same, the login fails temporarily), an IMAP
 * argument is a quoted string only when it is printable US-ASCII, else a
 * literal, and an XCLIENT value is xtext.  The client's address comes from
 * its socket, never from anything it sent.
 *
 * IMAP: "ID" with the client's address (forward native, or the default
 *       with auth backend) and the login go out in one write: either
 *       "AUTHENTICATE PLAIN" with an initial response (the greeting offers
 *       SASL-IR and AUTH=PLAIN), or "LOGIN" whose literals are LITERAL+
 *       when offered, else synchronizing, each sent after the backend's
 *       "+"; "AUTHENTICATE PLAIN" then the response after "+" when the
 *       backend offers LOGINDISABLED.
 * POP3: "XCLIENT" (forward native; with auth backend, when the greeting,
 *       as Dovecot's to a trusted peer, or else "CAPA" offers it), "USER"
 *       and "PASS", each after the reply to the one before (no pipelining
 *       without PIPELINING).
 * PROXY protocol (forward proxy_protocol, proxy_protocol_v2): a v1 or v2
 * header before anything else.
 *
 * The connection and the greeting (and CAPA) have the connect timeout;
 * the login has its own: a backend that greeted and is slow to answer a
 * login (Dovecot delays refusals after failures) is not a dead server.
 */


#define NGX_MAIL_PLUS_UP_GREETING   0
#define NGX_MAIL_PLUS_UP_CAPA       1   /* POP3: CAPA sent */
#define NGX_MAIL_PLUS_UP_LOGIN      2   /* the login commands sent */
#define NGX_MAIL_PLUS_UP_CONTINUE   3   /* IMAP: a "+" awaited */
#define NGX_MAIL_PLUS_UP_TOKEN      4   /* IMAP: the token sent, a "+" is
                                           the error exchange */

#define NGX_MAIL_PLUS_UP_LINE       4096

/* ctx->arg of an IMAP login: which argument or response waits for "+" */

#define NGX_MAIL_PLUS_UP_ARG_LOGIN  0
#define NGX_MAIL_PLUS_UP_ARG_PASS   1
#define NGX_MAIL_PLUS_UP_ARG_PLAIN  2
#define NGX_MAIL_PLUS_UP_ARG_TOKEN  3


static ngx_int_t ngx_mail_plus_upstream_try(ngx_mail_session_t *s);
static void ngx_mail_plus_upstream_handler(ngx_event_t *ev);
static void ngx_mail_plus_upstream_login_error(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_upstream_read_line(ngx_connection_t *pc,
    ngx_buf_t *b, ngx_str_t *line, ngx_uint_t quickack);
static ngx_int_t ngx_mail_plus_upstream_imap(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line);
static void ngx_mail_plus_upstream_imap_caps(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_str_t *line);
static ngx_int_t ngx_mail_plus_upstream_imap_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_upstream_imap_continue(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
static u_char *ngx_mail_plus_upstream_imap_args(
    ngx_mail_plus_proxy_ctx_t *ctx, u_char *p);
static size_t ngx_mail_plus_upstream_imap_arg_len(ngx_str_t *v);
static u_char *ngx_mail_plus_upstream_plain(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, u_char *p);
static ngx_int_t ngx_mail_plus_upstream_pop3(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line);
static ngx_int_t ngx_mail_plus_upstream_pop3_capa(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line);
static void ngx_mail_plus_upstream_pop3_sasl(ngx_mail_plus_proxy_ctx_t *ctx,
    u_char *p, u_char *last);
static ngx_int_t ngx_mail_plus_upstream_pop3_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_upstream_token_error(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
static void ngx_mail_plus_upstream_next_command(
    ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_upstream_client_addr(ngx_mail_session_t *s,
    ngx_str_t *addr, ngx_uint_t *port, ngx_str_t *local,
    ngx_uint_t *local_port);
static u_char *ngx_mail_plus_upstream_reserve(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, size_t len);
static u_char *ngx_mail_plus_upstream_proxy_v2(ngx_connection_t *c,
    u_char *p);
static ngx_uint_t ngx_mail_plus_upstream_quotable(ngx_str_t *v);
static u_char *ngx_mail_plus_upstream_quote(u_char *p, ngx_str_t *s);
static u_char *ngx_mail_plus_upstream_xtext(u_char *p, ngx_str_t *v);
static void ngx_mail_plus_upstream_log_reply(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_uint_t level, char *text,
    ngx_str_t *line);
static void ngx_mail_plus_upstream_next(ngx_mail_session_t *s);
static void ngx_mail_plus_upstream_fail(ngx_mail_session_t *s,
    ngx_str_t *text);


void
ngx_mail_plus_upstream_connect(ngx_mail_session_t *s)
{
    ngx_int_t                   rc;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    s->connection->log->action = "connecting to backend";

    rc = ngx_mail_plus_upstream_token_init(s, ctx);

    if (rc == NGX_ERROR) {
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_ERROR);
        return;
    }

    /*
     * the router refuses control characters; this side does not rely on
     * it: a CR, an LF or a NUL would end a command or a SASL field early
     */

    if (rc == NGX_DECLINED
        || ngx_mail_plus_text_has_ctl(&ctx->up_login)
        || ngx_mail_plus_text_has_ctl(&ctx->up_password))
    {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "login \"%V\" with a control character "
                      "not sent to a backend", &ctx->user);

        ngx_mail_plus_upstream_fail(s,
                          &ngx_mail_plus_proxy_texts[ctx->protocol].tempfail);
        return;
    }

    for ( ;; ) {

        rc = ngx_mail_plus_upstream_try(s);

        if (rc == NGX_OK) {
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_ERROR);
            return;
        }

        /* a failure in use counts for the server's health */

        ngx_mail_plus_health_report(ctx->check->route.server,
                                    ctx->check->route.protocol, 0,
                                    s->connection->log);

        if (ngx_mail_plus_router_next(&ctx->check->route) != NGX_OK) {
            ngx_mail_plus_upstream_fail(s, NULL);
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "proxy: failover to server %V",
                       &ctx->check->route.server->name);
    }
}


static ngx_int_t
ngx_mail_plus_upstream_try(ngx_mail_session_t *s)
{
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_connection_t           *c, *pc;
    struct sockaddr            *sa;
    ngx_mail_plus_route_t      *route;
    ngx_mail_plus_server_t     *server;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    route = &ctx->check->route;
    server = route->server;

    sa = ngx_palloc(c->pool, server->addr.socklen);
    if (sa == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(sa, server->addr.sockaddr, server->addr.socklen);
    ngx_inet_set_port(sa, route->port);

    ctx->backend.data = ctx->backend_text;
    ctx->backend.len = ngx_sock_ntop(sa, server->addr.socklen,
                                     ctx->backend_text, NGX_SOCKADDR_STRLEN,
                                     1);

    ngx_memzero(&ctx->peer, sizeof(ngx_peer_connection_t));

    ctx->peer.sockaddr = sa;
    ctx->peer.socklen = server->addr.socklen;
    ctx->peer.name = &ctx->backend;
    ctx->peer.get = ngx_event_get_peer;
    ctx->peer.log = c->log;
    ctx->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&ctx->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "backend %V of \"%V\" refused, trying the next",
                      &ctx->backend, &ctx->user);

        if (ctx->peer.connection) {
            ngx_close_connection(ctx->peer.connection);
            ctx->peer.connection = NULL;
        }

        return NGX_DECLINED;
    }

    pc = ctx->peer.connection;

    pc->data = s;
    pc->log = c->log;
    pc->pool = c->pool;
    pc->read->log = c->log;
    pc->write->log = c->log;
    pc->read->handler = ngx_mail_plus_upstream_handler;
    pc->write->handler = ngx_mail_plus_upstream_handler;

    if (ngx_tcp_nodelay(pc) != NGX_OK) {
        ngx_close_connection(pc);
        ctx->peer.connection = NULL;
        return NGX_DECLINED;
    }

    if (ctx->line == NULL) {
        ctx->line = ngx_create_temp_buf(c->pool, NGX_MAIL_PLUS_UP_LINE);
        if (ctx->line == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->line->pos = ctx->line->start;
    ctx->line->last = ctx->line->start;
    ctx->state = NGX_MAIL_PLUS_UP_GREETING;
    ctx->send.len = 0;
    ctx->replies = 0;
    ctx->arg = 0;
    ctx->sasl_ir = 0;
    ctx->auth_plain = 0;
    ctx->login_disabled = 0;
    ctx->literal_plus = 0;
    ctx->xclient = 0;
    ctx->quickack = 0;
    ctx->auth_oauthbearer = 0;
    ctx->auth_xoauth2 = 0;
    ctx->token_cont = 0;
    ctx->token_mech = 0;

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: backend %V of pool \"%V\" %s, forward %ui",
                   &ctx->backend, &route->pool->name,
                   (rc == NGX_OK) ? "connected" : "connecting",
                   route->pool->forward);

    if (route->pool->forward == NGX_MAIL_PLUS_FORWARD_PROXY
        || route->pool->forward == NGX_MAIL_PLUS_FORWARD_PROXY2)
    {
        p = ngx_pnalloc(c->pool, NGX_PROXY_PROTOCOL_MAX_HEADER);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->send.data = p;

        if (route->pool->forward == NGX_MAIL_PLUS_FORWARD_PROXY) {
            p = ngx_proxy_protocol_write(c, p,
                                         p + NGX_PROXY_PROTOCOL_MAX_HEADER);

        } else {
            p = ngx_mail_plus_upstream_proxy_v2(c, p);
        }

        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->send.len = p - ctx->send.data;
    }

    ngx_add_timer(pc->read, ctx->conf->connect_timeout);

    if (rc == NGX_OK && ctx->send.len) {
        ngx_mail_plus_upstream_handler(pc->write);
    }

    return NGX_OK;
}


static void
ngx_mail_plus_upstream_handler(ngx_event_t *ev)
{
    ssize_t                     n;
    ngx_int_t                   rc;
    ngx_str_t                   line;
    ngx_connection_t           *c, *pc;
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    pc = ev->data;
    s = pc->data;
    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (ev->timedout) {

        if (ctx->state < NGX_MAIL_PLUS_UP_LOGIN) {
            ngx_log_error(NGX_LOG_WARN, c->log, NGX_ETIMEDOUT,
                          "backend %V timed out, trying the next",
                          &ctx->backend);
            ngx_mail_plus_upstream_next(s);
            return;
        }

        ngx_log_error(NGX_LOG_WARN, c->log, NGX_ETIMEDOUT,
                      "backend %V did not answer the login of \"%V\" "
                      "in time", &ctx->backend, &ctx->user);
        ngx_mail_plus_upstream_login_error(s, ctx);
        return;
    }

    for ( ;; ) {

        while (ctx->send.len && pc->write->ready) {

            n = pc->send(pc, ctx->send.data, ctx->send.len);

            if (n == NGX_ERROR) {

                if (ctx->state < NGX_MAIL_PLUS_UP_LOGIN) {
                    ngx_mail_plus_upstream_next(s);

                } else {
                    ngx_mail_plus_upstream_login_error(s, ctx);
                }

                return;
            }

            if (n == NGX_AGAIN) {
                break;
            }

            ctx->send.data += n;
            ctx->send.len -= n;
        }

        rc = ngx_mail_plus_upstream_read_line(pc, ctx->line, &line,
                                              ctx->quickack);

        if (rc == NGX_AGAIN) {
            break;
        }

        if (rc == NGX_ERROR) {

            if (ctx->state < NGX_MAIL_PLUS_UP_LOGIN) {
                ngx_log_error(NGX_LOG_WARN, c->log, 0,
                              "backend %V closed or failed, trying the next",
                              &ctx->backend);
                ngx_mail_plus_upstream_next(s);
                return;
            }

            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "backend %V closed or failed during the login "
                          "of \"%V\"", &ctx->backend, &ctx->user);
            ngx_mail_plus_upstream_login_error(s, ctx);
            return;
        }

        if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
            rc = ngx_mail_plus_upstream_imap(s, ctx, &line);

        } else {
            rc = ngx_mail_plus_upstream_pop3(s, ctx, &line);
        }

        switch (rc) {

        case NGX_AGAIN:
            continue;

        case NGX_OK:
            ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "proxy: backend %V accepted the login",
                           &ctx->backend);

            if (pc->read->timer_set) {
                ngx_del_timer(pc->read);
            }

            ngx_mail_plus_relay_start(s);
            return;

        case NGX_DECLINED:
            ngx_mail_plus_upstream_log_reply(s, ctx, NGX_LOG_WARN,
                                             "sent unexpected", &line);

            if (ctx->state < NGX_MAIL_PLUS_UP_LOGIN) {
                ngx_mail_plus_upstream_next(s);

            } else {
                ngx_mail_plus_upstream_login_error(s, ctx);
            }

            return;

        case NGX_ABORT:

            /*
             * the backend cannot take this login (logged): nor can the
             * others of the pool, and the server is not failing
             */

            ngx_mail_plus_upstream_fail(s,
                          &ngx_mail_plus_proxy_texts[ctx->protocol].tempfail);
            return;

        case NGX_DONE:
            /* the backend refused the login: ctx->reply is the answer */
            ngx_mail_plus_upstream_log_reply(s, ctx, NGX_LOG_INFO,
                                             "refused the login with",
                                             &ctx->reply);
            ngx_mail_plus_upstream_fail(s, &ctx->reply);
            return;

        default: /* NGX_ERROR */
            ngx_mail_close_connection(c);
            return;
        }
    }

    if (ngx_handle_write_event(pc->write, 0) != NGX_OK
        || ngx_handle_read_event(pc->read, 0) != NGX_OK)
    {
        ngx_mail_close_connection(c);
        return;
    }

    /*
     * each step of the backend's dialogue has its own time; the login's
     * may be long: a backend delays the refusal of a wrong password
     */

    ngx_add_timer(pc->read, ctx->state >= NGX_MAIL_PLUS_UP_LOGIN
                            ? ctx->conf->login_timeout
                            : ctx->conf->connect_timeout);
}


/*
 * Before the login a silent, closing or confused server is a dead one.
 * After its greeting a server is alive, and how it answers a login may
 * be the client's doing: a wrong password is refused late on purpose
 * (Dovecot's auth_failure_delay and auth penalty), an oversized one may
 * get "Input buffer full" and a close.  With auth backend nothing of the
 * login counts against the server's health: the client gets a temporary
 * failure, and the next server (which would check the same password) is
 * not tried.  With auth router the password is known to be right, so a
 * server that does not take it is failing: it counts, and the next one
 * is tried.
 */

static void
ngx_mail_plus_upstream_login_error(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    if (ctx->check->route.pool->auth == NGX_MAIL_PLUS_AUTH_ROUTER) {
        ngx_mail_plus_upstream_next(s);
        return;
    }

    ngx_mail_plus_upstream_fail(s,
                          &ngx_mail_plus_proxy_texts[ctx->protocol].tempfail);
}


/* NGX_OK: a whole line (with its LF); NGX_AGAIN; NGX_ERROR: gone or long */

static ngx_int_t
ngx_mail_plus_upstream_read_line(ngx_connection_t *pc, ngx_buf_t *b,
    ngx_str_t *line, ngx_uint_t quickack)
{
    u_char   *lf;
    ssize_t   n;
#if (NGX_LINUX && defined TCP_QUICKACK)
    int       on;
#endif

    for ( ;; ) {

        lf = ngx_strlchr(b->pos, b->last, LF);

        if (lf) {
            line->data = b->pos;
            line->len = lf + 1 - b->pos;
            b->pos = lf + 1;
            return NGX_OK;
        }

        if (b->pos == b->last) {
            b->pos = b->start;
            b->last = b->start;

        } else if (b->pos > b->start) {
            b->last = ngx_movemem(b->start, b->pos, b->last - b->pos);
            b->pos = b->start;
        }

        if (b->last == b->end) {
            return NGX_ERROR;
        }

        if (!pc->read->ready) {
            return NGX_AGAIN;
        }

        n = pc->recv(pc, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        b->last += n;

#if (NGX_LINUX && defined TCP_QUICKACK)

        /*
         * replies to pipelined commands (IMAP ID, then LOGIN) come in
         * separate writes; the backend's Nagle holds the second until
         * this side ACKs the first, which a delayed ACK would put off
         * by tens of milliseconds
         */

        if (quickack) {
            on = 1;
            (void) setsockopt(pc->fd, IPPROTO_TCP, TCP_QUICKACK, &on,
                              sizeof(int));
        }

#endif
    }
}


/*
 * NGX_AGAIN: more lines; NGX_OK: logged in; NGX_DECLINED: not a server to
 * use; NGX_DONE: the login was refused; NGX_ABORT: the server cannot take
 * this login (no token mechanism); NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_upstream_imap(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line)
{
    u_char     *p, *last;
    ngx_int_t   rc;

    last = line->data + line->len;

    if (ctx->state == NGX_MAIL_PLUS_UP_GREETING) {

        if (line->len < 4 || ngx_strncmp(line->data, "* OK", 4) != 0) {
            return NGX_DECLINED;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "proxy: backend %V greeting", &ctx->backend);

        ngx_mail_plus_upstream_imap_caps(ctx, line);

        rc = ngx_mail_plus_upstream_imap_login(s, ctx);

        if (rc != NGX_OK) {
            return rc;
        }

        s->connection->log->action = "logging in to backend";

        return NGX_AGAIN;
    }

    /* a literal or a SASL response may go on */

    if (line->data[0] == '+') {

        if (ctx->state == NGX_MAIL_PLUS_UP_TOKEN) {
            return ngx_mail_plus_upstream_token_error(s, ctx);
        }

        if (ctx->state != NGX_MAIL_PLUS_UP_CONTINUE) {
            return NGX_DECLINED;
        }

        if (ngx_mail_plus_upstream_imap_continue(s, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    /* untagged data and the ID reply ("I ...") are not the client's */

    if (line->len < 2 || line->data[0] != 'L' || line->data[1] != ' ') {
        return NGX_AGAIN;
    }

    p = line->data + 2;

    if (last - p >= 2 && ngx_strncasecmp(p, (u_char *) "OK", 2) == 0) {

        if (ctx->state == NGX_MAIL_PLUS_UP_CONTINUE) {

            /* done before all was sent: not a server to trust */

            return NGX_DECLINED;
        }

        /* the client's tag, then the backend's answer without its tag */

        ctx->reply.len = s->tag.len + (last - p);
        ctx->reply.data = ngx_pnalloc(s->connection->pool, ctx->reply.len);
        if (ctx->reply.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_cpymem(ctx->reply.data, s->tag.data, s->tag.len),
                   p, last - p);

        return NGX_OK;
    }

    /* "L NO [AUTHENTICATIONFAILED] ...": "NO" and the text, no CRLF */

    while (p < last && *p != ' ') {
        p++;
    }

    while (last > p && (last[-1] == CR || last[-1] == LF)) {
        last--;
    }

    ctx->reply.len = 2 + (last - p);
    ctx->reply.data = ngx_pnalloc(s->connection->pool, ctx->reply.len);
    if (ctx->reply.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(ctx->reply.data, "NO", 2), p, last - p);

    return NGX_DONE;
}


/* the capabilities of the greeting's "[CAPABILITY ...]", if it has one */

static void
ngx_mail_plus_upstream_imap_caps(ngx_mail_plus_proxy_ctx_t *ctx,
    ngx_str_t *line)
{
    u_char  *p, *last, *start;
    size_t   len;

    last = line->data + line->len;

    p = ngx_strlcasestrn(line->data, last, (u_char *) "[CAPABILITY ",
                         sizeof("[CAPABILITY ") - 2);
    if (p == NULL) {
        return;
    }

    p += sizeof("[CAPABILITY ") - 1;

    while (p < last && *p != ']') {

        start = p;

        while (p < last && *p != ' ' && *p != ']') {
            p++;
        }

        len = p - start;

        ngx_mail_plus_upstream_token_cap(ctx, start, len);

        if (len == sizeof("SASL-IR") - 1
            && ngx_strncasecmp(start, (u_char *) "SASL-IR", len) == 0)
        {
            ctx->sasl_ir = 1;

        } else if (len == sizeof("AUTH=PLAIN") - 1
                   && ngx_strncasecmp(start, (u_char *) "AUTH=PLAIN", len)
                      == 0)
        {
            ctx->auth_plain = 1;

        } else if (len == sizeof("LITERAL+") - 1
                   && ngx_strncasecmp(start, (u_char *) "LITERAL+", len)
                      == 0)
        {
            ctx->literal_plus = 1;

        } else if (len == sizeof("LOGINDISABLED") - 1
                   && ngx_strncasecmp(start, (u_char *) "LOGINDISABLED",
                                      len)
                      == 0)
        {
            ctx->login_disabled = 1;
        }

        if (p < last && *p == ' ') {
            p++;
        }
    }

    ngx_log_debug4(NGX_LOG_DEBUG_MAIL, ctx->session->connection->log, 0,
                   "proxy: backend capability sasl-ir:%ud auth=plain:%ud "
                   "literal+:%ud logindisabled:%ud", ctx->sasl_ir,
                   ctx->auth_plain, ctx->literal_plus, ctx->login_disabled);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, ctx->session->connection->log, 0,
                   "proxy: backend capability auth=oauthbearer:%ud "
                   "auth=xoauth2:%ud", ctx->auth_oauthbearer,
                   ctx->auth_xoauth2);
}


static ngx_int_t
ngx_mail_plus_upstream_imap_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char                 *p;
    size_t                  len;
    ngx_str_t               addr, local;
    ngx_uint_t              port, local_port, forward;
    ngx_mail_plus_check_t  *check;

    check = ctx->check;
    forward = check->route.pool->forward;

    len = 0;

    if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE
        || forward == NGX_MAIL_PLUS_FORWARD_OFFERED)
    {
        if (ngx_mail_plus_upstream_client_addr(s, &addr, &port, &local,
                                               &local_port)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        len += sizeof("I ID (\"x-originating-ip\" \"\" "
                      "\"x-originating-port\" \"\" \"x-connected-ip\" \"\" "
                      "\"x-connected-port\" \"\")" CRLF) - 1
               + addr.len + local.len + 2 * NGX_INT_T_LEN;
    }

    /* the longest of the ways to log in */

    len += sizeof("L AUTHENTICATE PLAIN " CRLF) - 1
           + ngx_base64_encoded_length(2 + ctx->up_login.len
                                       + ctx->up_password.len)
           + sizeof("L LOGIN  " CRLF) - 1
           + ngx_mail_plus_upstream_imap_arg_len(&ctx->up_login)
           + ngx_mail_plus_upstream_imap_arg_len(&ctx->up_password);

    if (ctx->token_login) {
        if (ngx_mail_plus_upstream_token_mech(s, ctx) != NGX_OK) {
            return NGX_ABORT;
        }

        len += sizeof("L AUTHENTICATE OAUTHBEARER ") - 1
               + ngx_mail_plus_upstream_token_len(ctx);
    }

    p = ngx_mail_plus_upstream_reserve(s, ctx, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE
        || forward == NGX_MAIL_PLUS_FORWARD_OFFERED)
    {
        /* addresses are from sockets, ports are numbers: nothing to quote */

        ctx->quickack = 1;

        p = ngx_sprintf(p, "I ID (\"x-originating-ip\" \"%V\" "
                        "\"x-originating-port\" \"%ui\" "
                        "\"x-connected-ip\" \"%V\" "
                        "\"x-connected-port\" \"%ui\")" CRLF,
                        &addr, port, &local, local_port);
    }

    ctx->state = NGX_MAIL_PLUS_UP_LOGIN;

    if (ctx->token_login) {
        p = ngx_sprintf(p, "L AUTHENTICATE %s",
                        ctx->token_mech == NGX_MAIL_PLUS_SASL_OAUTHBEARER
                        ? "OAUTHBEARER" : "XOAUTH2");

        if (ctx->sasl_ir) {
            *p++ = ' ';
            p = ngx_mail_plus_upstream_token_response(s, ctx, p);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ctx->state = NGX_MAIL_PLUS_UP_TOKEN;

        } else {
            *p++ = CR; *p++ = LF;
            ctx->arg = NGX_MAIL_PLUS_UP_ARG_TOKEN;
            ctx->state = NGX_MAIL_PLUS_UP_CONTINUE;
        }

    } else if (ctx->auth_plain && ctx->sasl_ir) {
        p = ngx_cpymem(p, "L AUTHENTICATE PLAIN ",
                       sizeof("L AUTHENTICATE PLAIN ") - 1);
        p = ngx_mail_plus_upstream_plain(s, ctx, p);
        if (p == NULL) {
            return NGX_ERROR;
        }

    } else if (ctx->auth_plain && ctx->login_disabled) {
        p = ngx_cpymem(p, "L AUTHENTICATE PLAIN" CRLF,
                       sizeof("L AUTHENTICATE PLAIN" CRLF) - 1);
        ctx->arg = NGX_MAIL_PLUS_UP_ARG_PLAIN;
        ctx->state = NGX_MAIL_PLUS_UP_CONTINUE;

    } else {
        p = ngx_cpymem(p, "L LOGIN ", sizeof("L LOGIN ") - 1);
        ctx->arg = NGX_MAIL_PLUS_UP_ARG_LOGIN;
        p = ngx_mail_plus_upstream_imap_args(ctx, p);
    }

    ctx->send.len = p - ctx->send.data;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend login sent, state:%ui arg:%ui",
                   ctx->state, ctx->arg);

    return NGX_OK;
}


/* the backend's "+": the literal's bytes or the SASL response, and on */

static ngx_int_t
ngx_mail_plus_upstream_imap_continue(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *login, *passwd;

    login = &ctx->up_login;
    passwd = &ctx->up_password;

    ctx->state = NGX_MAIL_PLUS_UP_LOGIN;

    if (ctx->arg == NGX_MAIL_PLUS_UP_ARG_TOKEN) {
        p = ngx_mail_plus_upstream_reserve(s, ctx,
                                       ngx_mail_plus_upstream_token_len(ctx));
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_mail_plus_upstream_token_response(s, ctx, p);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->state = NGX_MAIL_PLUS_UP_TOKEN;

    } else if (ctx->arg == NGX_MAIL_PLUS_UP_ARG_PLAIN) {
        len = ngx_base64_encoded_length(2 + login->len + passwd->len) + 2;

        p = ngx_mail_plus_upstream_reserve(s, ctx, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_mail_plus_upstream_plain(s, ctx, p);
        if (p == NULL) {
            return NGX_ERROR;
        }

    } else if (ctx->arg == NGX_MAIL_PLUS_UP_ARG_LOGIN) {
        len = login->len + 1
              + ngx_mail_plus_upstream_imap_arg_len(passwd) + 2;

        p = ngx_mail_plus_upstream_reserve(s, ctx, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, login->data, login->len);
        *p++ = ' ';

        ctx->arg = NGX_MAIL_PLUS_UP_ARG_PASS;
        p = ngx_mail_plus_upstream_imap_args(ctx, p);

    } else {
        p = ngx_mail_plus_upstream_reserve(s, ctx, passwd->len + 2);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, passwd->data, passwd->len);
        *p++ = CR; *p++ = LF;
    }

    ctx->send.len = p - ctx->send.data;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend continued, state:%ui arg:%ui",
                   ctx->state, ctx->arg);

    return NGX_OK;
}


/*
 * the LOGIN arguments from ctx->arg on, each a quoted string when that is
 * safe, else a literal; it stops after a synchronizing literal's size
 * (state "continue") or after the CRLF at the end
 */

static u_char *
ngx_mail_plus_upstream_imap_args(ngx_mail_plus_proxy_ctx_t *ctx, u_char *p)
{
    ngx_str_t  *v;

    for ( ;; ) {

        v = (ctx->arg == NGX_MAIL_PLUS_UP_ARG_LOGIN)
            ? &ctx->up_login : &ctx->up_password;

        if (ngx_mail_plus_upstream_quotable(v)) {
            p = ngx_mail_plus_upstream_quote(p, v);

        } else if (ctx->literal_plus) {
            p = ngx_sprintf(p, "{%uz+}" CRLF "%V", v->len, v);

        } else {
            p = ngx_sprintf(p, "{%uz}" CRLF, v->len);
            ctx->state = NGX_MAIL_PLUS_UP_CONTINUE;
            return p;
        }

        if (ctx->arg == NGX_MAIL_PLUS_UP_ARG_PASS) {
            *p++ = CR; *p++ = LF;
            return p;
        }

        *p++ = ' ';
        ctx->arg = NGX_MAIL_PLUS_UP_ARG_PASS;
    }
}


/* the most an argument takes: quoted with every byte escaped, or literal */

static size_t
ngx_mail_plus_upstream_imap_arg_len(ngx_str_t *v)
{
    return ngx_max(2 + 2 * v->len,
                   sizeof("{+}" CRLF) - 1 + NGX_SIZE_T_LEN + v->len);
}


/* the base64 of "\0login\0password" and CRLF */

static u_char *
ngx_mail_plus_upstream_plain(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, u_char *p)
{
    u_char     *q;
    ngx_str_t   plain, encoded, *login, *passwd;

    login = &ctx->up_login;
    passwd = &ctx->up_password;

    plain.len = 2 + login->len + passwd->len;
    plain.data = ngx_pnalloc(s->connection->pool, plain.len);
    if (plain.data == NULL) {
        return NULL;
    }

    q = plain.data;
    *q++ = '\0';
    q = ngx_cpymem(q, login->data, login->len);
    *q++ = '\0';
    ngx_memcpy(q, passwd->data, passwd->len);

    encoded.data = p;
    ngx_encode_base64(&encoded, &plain);

    /* the password is not kept in the session's memory longer than needed */

    ngx_explicit_memzero(plain.data, plain.len);

    p += encoded.len;
    *p++ = CR; *p++ = LF;

    return p;
}


/*
 * a quoted string holds TEXT-CHARs (RFC 3501): 7-bit, no CR, LF or NUL;
 * this side takes printable US-ASCII only, anything else goes as a literal
 */

static ngx_uint_t
ngx_mail_plus_upstream_quotable(ngx_str_t *v)
{
    u_char  *p, *last;

    last = v->data + v->len;

    for (p = v->data; p < last; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            return 0;
        }
    }

    return 1;
}


/*
 * room for "len" more bytes to the backend after what still waits to go
 * out (a PROXY protocol header, or the last command): where to write them
 */

static u_char *
ngx_mail_plus_upstream_reserve(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(s->connection->pool, len + ctx->send.len);
    if (p == NULL) {
        return NULL;
    }

    if (ctx->send.len) {
        p = ngx_cpymem(p, ctx->send.data, ctx->send.len);
    }

    ctx->send.data = p - ctx->send.len;

    return p;
}


static u_char *
ngx_mail_plus_upstream_quote(u_char *p, ngx_str_t *s)
{
    u_char  *c, *last;

    *p++ = '"';

    last = s->data + s->len;

    for (c = s->data; c < last; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
        }

        *p++ = *c;
    }

    *p++ = '"';

    return p;
}


static ngx_int_t
ngx_mail_plus_upstream_pop3(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line)
{
    u_char      *p;
    ngx_uint_t   ok, forward, capa;

    ok = (line->len >= 3 && ngx_strncmp(line->data, "+OK", 3) == 0);

    if (ctx->state == NGX_MAIL_PLUS_UP_GREETING) {

        if (!ok) {
            return NGX_DECLINED;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                       "proxy: backend %V greeting", &ctx->backend);

        forward = ctx->check->route.pool->forward;
        capa = ctx->token_login;

        if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE) {
            ctx->xclient = 1;

        } else if (forward == NGX_MAIL_PLUS_FORWARD_OFFERED) {

            /* Dovecot tells a trusted peer in its greeting, others in CAPA */

            if (ngx_strlcasestrn(line->data, line->data + line->len,
                                 (u_char *) "[XCLIENT]",
                                 sizeof("[XCLIENT]") - 2)
                != NULL)
            {
                ctx->xclient = 1;

            } else {
                capa = 1;
            }
        }

        /* a token login needs CAPA's "SASL" line */

        if (capa) {
            p = ngx_mail_plus_upstream_reserve(s, ctx,
                                               sizeof("CAPA" CRLF) - 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            p = ngx_cpymem(p, "CAPA" CRLF, sizeof("CAPA" CRLF) - 1);

            ctx->send.len = p - ctx->send.data;
            ctx->replies = 0;
            ctx->state = NGX_MAIL_PLUS_UP_CAPA;

            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                           "proxy: backend capa sent");

            return NGX_AGAIN;
        }

        return ngx_mail_plus_upstream_pop3_login(s, ctx);
    }

    if (ctx->state == NGX_MAIL_PLUS_UP_CAPA) {
        return ngx_mail_plus_upstream_pop3_capa(s, ctx, line);
    }

    if (line->len && line->data[0] != '+' && line->data[0] != '-') {
        return NGX_DECLINED;
    }

    /* a token's AUTH continued: the error exchange */

    if (ctx->token_login && !ok && line->data[0] == '+'
        && ctx->replies == 1)
    {
        return ngx_mail_plus_upstream_token_error(s, ctx);
    }

    /*
     * one reply per command, the next command after it (POP3 pipelining
     * needs the server's PIPELINING): XCLIENT (if sent; a refusal is
     * logged by the backend and passed over), USER, PASS; or XCLIENT and
     * a token's AUTH
     */

    ctx->replies--;

    if (ctx->replies == 2
        || (ctx->replies == 1 && (ok || ctx->token_login)))
    {
        ngx_mail_plus_upstream_next_command(ctx);
        return NGX_AGAIN;
    }

    /* the reply to PASS, or USER refused */

    if (ok) {
        ctx->reply.data = ngx_pnalloc(s->connection->pool, line->len);
        if (ctx->reply.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->reply.data, line->data, line->len);
        ctx->reply.len = line->len;

        return NGX_OK;
    }

    ctx->reply = ngx_mail_plus_proxy_texts[NGX_MAIL_PLUS_POP3].failed;

    if (line->len > 5 && line->data[0] == '-') {
        ctx->reply.data = ngx_pnalloc(s->connection->pool, line->len);
        if (ctx->reply.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->reply.data, line->data, line->len);
        ctx->reply.len = line->len - ((line->data[line->len - 2] == CR)
                                      ? 2 : 1);
    }

    return NGX_DONE;
}


/* a line of the answer to CAPA: is "XCLIENT" among the capabilities? */

static ngx_int_t
ngx_mail_plus_upstream_pop3_capa(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line)
{
    size_t   len;
    u_char  *p;

    len = line->len;
    p = line->data;

    while (len && (p[len - 1] == CR || p[len - 1] == LF)) {
        len--;
    }

    if (ctx->replies++ == 0) {

        if (len >= 3 && ngx_strncmp(p, "+OK", 3) == 0) {
            return NGX_AGAIN;
        }

        if (len < 4 || ngx_strncmp(p, "-ERR", 4) != 0) {
            return NGX_DECLINED;
        }

        /* no CAPA: no XCLIENT either */

    } else if (len != 1 || p[0] != '.') {

        if (len >= sizeof("XCLIENT") - 1
            && ngx_strncasecmp(p, (u_char *) "XCLIENT",
                               sizeof("XCLIENT") - 1) == 0
            && (len == sizeof("XCLIENT") - 1
                || p[sizeof("XCLIENT") - 1] == ' ')
            && ctx->check->route.pool->forward
               == NGX_MAIL_PLUS_FORWARD_OFFERED)
        {
            ctx->xclient = 1;
        }

        if (len > sizeof("SASL ") - 1
            && ngx_strncasecmp(p, (u_char *) "SASL ", sizeof("SASL ") - 1)
               == 0)
        {
            ngx_mail_plus_upstream_pop3_sasl(ctx, p + sizeof("SASL ") - 1,
                                             p + len);
        }

        return NGX_AGAIN;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend capa done, xclient:%ud oauthbearer:%ud "
                   "xoauth2:%ud", ctx->xclient, ctx->auth_oauthbearer,
                   ctx->auth_xoauth2);

    return ngx_mail_plus_upstream_pop3_login(s, ctx);
}


/* the mechanisms of CAPA's "SASL" line */

static void
ngx_mail_plus_upstream_pop3_sasl(ngx_mail_plus_proxy_ctx_t *ctx, u_char *p,
    u_char *last)
{
    u_char  *start;

    while (p < last) {

        while (p < last && *p == ' ') {
            p++;
        }

        start = p;

        while (p < last && *p != ' ') {
            p++;
        }

        ngx_mail_plus_upstream_token_cap(ctx, start, p - start);
    }
}


static ngx_int_t
ngx_mail_plus_upstream_pop3_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char                 *p;
    size_t                  len;
    ngx_str_t               addr, local, port_text, *login, *passwd;
    ngx_uint_t              port, local_port;
    u_char                  port_buf[NGX_INT_T_LEN];

    login = &ctx->up_login;
    passwd = &ctx->up_password;

    len = sizeof("USER " CRLF "PASS " CRLF) - 1 + login->len + passwd->len;

    if (ctx->token_login) {
        if (ngx_mail_plus_upstream_token_mech(s, ctx) != NGX_OK) {
            return NGX_ABORT;
        }

        len = sizeof("AUTH OAUTHBEARER ") - 1
              + ngx_mail_plus_upstream_token_len(ctx);
    }

    ngx_str_null(&addr);
    ngx_str_null(&port_text);

    if (ctx->xclient) {
        if (ngx_mail_plus_upstream_client_addr(s, &addr, &port, &local,
                                               &local_port)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        port_text.data = port_buf;
        port_text.len = ngx_sprintf(port_buf, "%ui", port) - port_buf;

        /* xtext: a byte may take three */

        len += sizeof("XCLIENT ADDR= PORT=" CRLF) - 1
               + 3 * (addr.len + port_text.len);
    }

    p = ngx_mail_plus_upstream_reserve(s, ctx, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->replies = 2;

    if (ctx->xclient) {
        p = ngx_cpymem(p, "XCLIENT ADDR=", sizeof("XCLIENT ADDR=") - 1);
        p = ngx_mail_plus_upstream_xtext(p, &addr);
        p = ngx_cpymem(p, " PORT=", sizeof(" PORT=") - 1);
        p = ngx_mail_plus_upstream_xtext(p, &port_text);
        *p++ = CR; *p++ = LF;
        ctx->replies++;
    }

    /* no control character here: checked before the connection */

    if (ctx->token_login) {

        /* one command, AUTH with its initial response (RFC 5034) */

        ctx->replies--;

        p = ngx_sprintf(p, "AUTH %s ",
                        ctx->token_mech == NGX_MAIL_PLUS_SASL_OAUTHBEARER
                        ? "OAUTHBEARER" : "XOAUTH2");

        p = ngx_mail_plus_upstream_token_response(s, ctx, p);
        if (p == NULL) {
            return NGX_ERROR;
        }

    } else {
        p = ngx_sprintf(p, "USER %V" CRLF "PASS %V" CRLF, login, passwd);
    }

    /* the first command now, with a PROXY protocol header still waiting */

    ctx->next.data = ctx->send.data + ctx->send.len;
    ctx->next.len = p - ctx->next.data;

    ngx_mail_plus_upstream_next_command(ctx);

    ctx->state = NGX_MAIL_PLUS_UP_LOGIN;
    s->connection->log->action = "logging in to backend";

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend login sent, xclient:%ud", ctx->xclient);

    return NGX_AGAIN;
}


/*
 * an XCLIENT attribute value as xtext (RFC 3461, as Postfix's XCLIENT
 * takes it): "!" to "~" but "+" and "=" as they are, every other byte
 * "+XX", so that no value can hold a space and start another attribute
 */

static u_char *
ngx_mail_plus_upstream_xtext(u_char *p, ngx_str_t *v)
{
    u_char  *c, *last;

    static u_char  hex[] = "0123456789ABCDEF";

    last = v->data + v->len;

    for (c = v->data; c < last; c++) {

        if (*c >= '!' && *c <= '~' && *c != '+' && *c != '=') {
            *p++ = *c;
            continue;
        }

        *p++ = '+';
        *p++ = hex[*c >> 4];
        *p++ = hex[*c & 0xf];
    }

    return p;
}


/*
 * a continuation after a token was sent: the backend refuses it with an
 * RFC 7628 JSON status (not read: the client is told as for a wrong
 * password); the dummy response "\001" ends the exchange, the NO or -ERR
 * that follows is the refusal.  Once only.
 */

static ngx_int_t
ngx_mail_plus_upstream_token_error(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char  *p;

    if (ctx->token_cont) {
        return NGX_DECLINED;
    }

    ctx->token_cont = 1;

    p = ngx_mail_plus_upstream_reserve(s, ctx, sizeof("AQ==" CRLF) - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, "AQ==" CRLF, sizeof("AQ==" CRLF) - 1);

    ctx->send.len = p - ctx->send.data;
    ctx->state = NGX_MAIL_PLUS_UP_LOGIN;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend %V refused the token, dummy response "
                   "sent", &ctx->backend);

    return NGX_AGAIN;
}


static void
ngx_mail_plus_upstream_next_command(ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char  *lf;
    size_t   len;

    lf = ngx_strlchr(ctx->next.data, ctx->next.data + ctx->next.len, LF);
    len = lf + 1 - ctx->next.data;

    if (ctx->send.len == 0) {
        ctx->send.data = ctx->next.data;
    }

    /* send and next are one buffer: what is queued only grows */

    ctx->send.len += len;
    ctx->next.data += len;
    ctx->next.len -= len;
}


/*
 * the client's and the local address and port, as text made from the
 * sockets (or from what the realip module set from a trusted peer's PROXY
 * header): never text a client wrote
 */

static ngx_int_t
ngx_mail_plus_upstream_client_addr(ngx_mail_session_t *s, ngx_str_t *addr,
    ngx_uint_t *port, ngx_str_t *local, ngx_uint_t *local_port)
{
    u_char            *p;
    ngx_connection_t  *c;

    c = s->connection;

    if (ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(c->pool, 2 * NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    addr->data = p;
    addr->len = ngx_sock_ntop(c->sockaddr, c->socklen, p,
                              NGX_SOCKADDR_STRLEN, 0);

    p += NGX_SOCKADDR_STRLEN;

    local->data = p;
    local->len = ngx_sock_ntop(c->local_sockaddr, c->local_socklen, p,
                               NGX_SOCKADDR_STRLEN, 0);

    *port = ngx_inet_get_port(c->sockaddr);
    *local_port = ngx_inet_get_port(c->local_sockaddr);

    return NGX_OK;
}


/*
 * a PROXY protocol v2 header: the signature, "PROXY" over TCP with the
 * client's and the local addresses and ports, in network order; at most
 * 16 + 36 bytes.  Another family (a UNIX socket) is sent as "LOCAL".
 */

static u_char *
ngx_mail_plus_upstream_proxy_v2(ngx_connection_t *c, u_char *p)
{
    size_t                len;
    u_char               *src, *dst;
    in_port_t             sport, dport;
    struct sockaddr_in   *sin, *lsin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6, *lsin6;
#endif

    static u_char  signature[] = "\r\n\r\n\0\r\nQUIT\n";

    if (ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK) {
        return NULL;
    }

    p = ngx_cpymem(p, signature, sizeof(signature) - 1);

    if (c->sockaddr->sa_family != c->local_sockaddr->sa_family) {
        goto local;
    }

    switch (c->sockaddr->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) c->sockaddr;
        lsin = (struct sockaddr_in *) c->local_sockaddr;

        *p++ = 0x21;                       /* version 2, PROXY */
        *p++ = 0x11;                       /* TCP over IPv4 */
        len = 4;
        src = (u_char *) &sin->sin_addr;
        dst = (u_char *) &lsin->sin_addr;
        sport = sin->sin_port;
        dport = lsin->sin_port;
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) c->sockaddr;
        lsin6 = (struct sockaddr_in6 *) c->local_sockaddr;

        *p++ = 0x21;
        *p++ = 0x21;                       /* TCP over IPv6 */
        len = 16;
        src = (u_char *) &sin6->sin6_addr;
        dst = (u_char *) &lsin6->sin6_addr;
        sport = sin6->sin6_port;
        dport = lsin6->sin6_port;
        break;
#endif

    default:
        goto local;
    }

    *p++ = 0;
    *p++ = (u_char) (2 * len + 4);

    p = ngx_cpymem(p, src, len);
    p = ngx_cpymem(p, dst, len);
    p = ngx_cpymem(p, &sport, 2);

    return ngx_cpymem(p, &dport, 2);

local:

    *p++ = 0x20;                           /* version 2, LOCAL */
    *p++ = 0x00;
    *p++ = 0;
    *p++ = 0;

    return p;
}


/* a backend's line in a log line: escaped, without its CRLF */

static void
ngx_mail_plus_upstream_log_reply(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_uint_t level, char *text,
    ngx_str_t *line)
{
    ngx_str_t  reply;
    u_char     buf[256];

    reply = *line;

    while (reply.len
           && (reply.data[reply.len - 1] == CR
               || reply.data[reply.len - 1] == LF))
    {
        reply.len--;
    }

    reply.len = ngx_mail_plus_text_log_write(buf, buf + sizeof(buf), &reply)
                - buf;
    reply.data = buf;

    ngx_log_error(level, s->connection->log, 0,
                  "backend %V %s \"%V\"", &ctx->backend, text, &reply);
}


/* the next server of the ring: this one failed in use */

static void
ngx_mail_plus_upstream_next(ngx_mail_session_t *s)
{
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    ngx_mail_plus_upstream_close(ctx);

    ngx_mail_plus_health_report(ctx->check->route.server,
                                ctx->check->route.protocol, 0,
                                s->connection->log);

    if (ngx_mail_plus_router_next(&ctx->check->route) != NGX_OK) {
        ngx_mail_plus_upstream_fail(s, NULL);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: backend %V failed, failover to server %V",
                   &ctx->backend, &ctx->check->route.server->name);

    ngx_mail_plus_upstream_connect(s);
}


/* no relay: the login was refused (text) or no backend answered (NULL) */

static void
ngx_mail_plus_upstream_fail(ngx_mail_session_t *s, ngx_str_t *text)
{
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    ngx_mail_plus_upstream_close(ctx);

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    /* the session goes on before login: the user's session is not open */

    ngx_mail_plus_proxy_release_user(ctx);

    if (text == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "no backend available for \"%V\"", &ctx->user);

        ngx_str_set(&ctx->backend, "-");

        text = &ngx_mail_plus_proxy_texts[ctx->protocol].unavailable;
    }

    ngx_str_set(&ctx->user, "-");

    ngx_mail_plus_proxy_reply(s, text, 1);
}


void
ngx_mail_plus_upstream_close(ngx_mail_plus_proxy_ctx_t *ctx)
{
    if (ctx->peer.connection) {
        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, ctx->session->connection->log, 0,
                       "proxy: backend %V connection closed", &ctx->backend);

        ngx_close_connection(ctx->peer.connection);
        ctx->peer.connection = NULL;
    }
}
