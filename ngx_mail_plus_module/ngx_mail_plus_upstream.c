
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
 * IMAP: "ID" with the client's address (forward native) and the login
 *       ("AUTHENTICATE PLAIN" with an initial response when the greeting
 *       offers SASL-IR, else "LOGIN" with LITERAL+ or quoted strings) go
 *       out in one write.
 * POP3: "XCLIENT" (forward native), "USER" and "PASS", each after the
 *       reply to the one before (no pipelining without PIPELINING).
 * PROXY protocol (forward proxy_protocol, proxy_protocol_v2): a v1 or v2
 * header before anything else.
 */


#define NGX_MAIL_PLUS_UP_GREETING   0
#define NGX_MAIL_PLUS_UP_LOGIN      1

#define NGX_MAIL_PLUS_UP_LINE       4096


static ngx_int_t ngx_mail_plus_upstream_try(ngx_mail_session_t *s);
static void ngx_mail_plus_upstream_handler(ngx_event_t *ev);
static ngx_int_t ngx_mail_plus_upstream_read_line(ngx_connection_t *pc,
    ngx_buf_t *b, ngx_str_t *line, ngx_uint_t quickack);
static ngx_int_t ngx_mail_plus_upstream_imap(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line);
static ngx_int_t ngx_mail_plus_upstream_pop3(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line);
static ngx_int_t ngx_mail_plus_upstream_imap_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_upstream_pop3_login(ngx_mail_session_t *s,
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
static u_char *ngx_mail_plus_upstream_quote(u_char *p, ngx_str_t *s);
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
                      &ctx->backend, &s->login);

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
    ctx->sasl_ir = 0;
    ctx->literal_plus = 0;
    ctx->quickack = 0;

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
        ngx_log_error(NGX_LOG_WARN, c->log, NGX_ETIMEDOUT,
                      "backend %V timed out, trying the next",
                      &ctx->backend);
        ngx_mail_plus_upstream_next(s);
        return;
    }

    for ( ;; ) {

        while (ctx->send.len && pc->write->ready) {

            n = pc->send(pc, ctx->send.data, ctx->send.len);

            if (n == NGX_ERROR) {
                ngx_mail_plus_upstream_next(s);
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
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "backend %V closed or failed, trying the next",
                          &ctx->backend);
            ngx_mail_plus_upstream_next(s);
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
            if (pc->read->timer_set) {
                ngx_del_timer(pc->read);
            }

            ngx_mail_plus_relay_start(s);
            return;

        case NGX_DECLINED:
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "backend %V sent unexpected \"%*s\", "
                          "trying the next", &ctx->backend,
                          line.len > 2 ? line.len - 2 : line.len, line.data);
            ngx_mail_plus_upstream_next(s);
            return;

        case NGX_DONE:
            /* the backend refused the login: ctx->reply is the answer */
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

    /* each step of the backend's dialogue has its own time */

    ngx_add_timer(pc->read, ctx->conf->connect_timeout);
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
 * use; NGX_DONE: the login was refused; NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_upstream_imap(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *line)
{
    u_char  *p, *last;

    last = line->data + line->len;

    if (ctx->state == NGX_MAIL_PLUS_UP_GREETING) {

        if (line->len < 4 || ngx_strncmp(line->data, "* OK", 4) != 0) {
            return NGX_DECLINED;
        }

        ctx->sasl_ir = (ngx_strlcasestrn(line->data, last,
                                         (u_char *) "SASL-IR", 7 - 1)
                        != NULL)
                       && (ngx_strlcasestrn(line->data, last,
                                            (u_char *) "AUTH=PLAIN", 10 - 1)
                           != NULL);
        ctx->literal_plus = (ngx_strlcasestrn(line->data, last,
                                              (u_char *) "LITERAL+", 8 - 1)
                             != NULL);

        if (ngx_mail_plus_upstream_imap_login(s, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->state = NGX_MAIL_PLUS_UP_LOGIN;
        s->connection->log->action = "logging in to backend";

        return NGX_AGAIN;
    }

    /* untagged data and the ID reply ("I ...") are not the client's */

    if (line->len < 2 || line->data[0] != 'L' || line->data[1] != ' ') {
        if (line->data[0] == '+') {
            return NGX_DECLINED;
        }

        return NGX_AGAIN;
    }

    p = line->data + 2;

    if (last - p >= 2 && ngx_strncasecmp(p, (u_char *) "OK", 2) == 0) {

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


static ngx_int_t
ngx_mail_plus_upstream_imap_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char                 *p;
    size_t                  len;
    ngx_str_t               addr, local, plain, *login, *passwd;
    ngx_uint_t              port, local_port, forward;
    ngx_mail_plus_check_t  *check;

    check = ctx->check;
    login = &check->route.login;
    passwd = &check->auth.password;
    forward = check->route.pool->forward;

    len = 0;

    if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE) {
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

    plain.len = 2 + login->len + passwd->len;

    len += sizeof("L AUTHENTICATE PLAIN " CRLF) - 1
           + ngx_base64_encoded_length(plain.len)
           + sizeof("L LOGIN {+} {+}" CRLF CRLF) - 1 + 2 * NGX_INT_T_LEN
           + 2 * (login->len + passwd->len) + 4;

    p = ngx_mail_plus_upstream_reserve(s, ctx, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE) {
        ctx->quickack = 1;

        p = ngx_sprintf(p, "I ID (\"x-originating-ip\" \"%V\" "
                        "\"x-originating-port\" \"%ui\" "
                        "\"x-connected-ip\" \"%V\" "
                        "\"x-connected-port\" \"%ui\")" CRLF,
                        &addr, port, &local, local_port);
    }

    if (ctx->sasl_ir) {
        plain.data = ngx_pnalloc(s->connection->pool, plain.len);
        if (plain.data == NULL) {
            return NGX_ERROR;
        }

        *plain.data = '\0';
        ngx_memcpy(plain.data + 1, login->data, login->len);
        plain.data[1 + login->len] = '\0';
        ngx_memcpy(plain.data + 2 + login->len, passwd->data, passwd->len);

        p = ngx_cpymem(p, "L AUTHENTICATE PLAIN ",
                       sizeof("L AUTHENTICATE PLAIN ") - 1);

        local.data = p;
        ngx_encode_base64(&local, &plain);
        p += local.len;

        *p++ = CR; *p++ = LF;

    } else if (ctx->literal_plus) {
        p = ngx_sprintf(p, "L LOGIN {%uz+}" CRLF "%V {%uz+}" CRLF "%V" CRLF,
                        login->len, login, passwd->len, passwd);

    } else {
        p = ngx_cpymem(p, "L LOGIN ", sizeof("L LOGIN ") - 1);
        p = ngx_mail_plus_upstream_quote(p, login);
        *p++ = ' ';
        p = ngx_mail_plus_upstream_quote(p, passwd);
        *p++ = CR; *p++ = LF;
    }

    ctx->send.len = p - ctx->send.data;

    return NGX_OK;
}


/*
 * room for "len" more bytes to the backend after what still waits to go
 * out (a PROXY protocol header): where to write them
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
    ngx_uint_t  ok;

    ok = (line->len >= 3 && ngx_strncmp(line->data, "+OK", 3) == 0);

    if (ctx->state == NGX_MAIL_PLUS_UP_GREETING) {

        if (!ok) {
            return NGX_DECLINED;
        }

        if (ngx_mail_plus_upstream_pop3_login(s, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->state = NGX_MAIL_PLUS_UP_LOGIN;
        s->connection->log->action = "logging in to backend";

        return NGX_AGAIN;
    }

    if (line->len && line->data[0] != '+' && line->data[0] != '-') {
        return NGX_DECLINED;
    }

    /*
     * one reply per command, the next command after it (POP3 pipelining
     * needs the server's PIPELINING): XCLIENT (if sent; a refusal is
     * logged by the backend and passed over), USER, PASS
     */

    ctx->replies--;

    if (ctx->replies == 2 || (ctx->replies == 1 && ok)) {
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

    ngx_str_set(&ctx->reply, "-ERR [AUTH] Authentication failed.");

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


static ngx_int_t
ngx_mail_plus_upstream_pop3_login(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    u_char                 *p;
    size_t                  len;
    ngx_str_t               addr, local, *login, *passwd;
    ngx_uint_t              port, local_port, forward;
    ngx_mail_plus_check_t  *check;

    check = ctx->check;
    login = &check->route.login;
    passwd = &check->auth.password;
    forward = check->route.pool->forward;

    len = sizeof("USER " CRLF "PASS " CRLF) - 1 + login->len + passwd->len;

    if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE) {
        if (ngx_mail_plus_upstream_client_addr(s, &addr, &port, &local,
                                               &local_port)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        len += sizeof("XCLIENT ADDR= PORT=" CRLF) - 1 + addr.len
               + NGX_INT_T_LEN;
    }

    p = ngx_mail_plus_upstream_reserve(s, ctx, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->replies = 2;

    if (forward == NGX_MAIL_PLUS_FORWARD_NATIVE) {
        p = ngx_sprintf(p, "XCLIENT ADDR=%V PORT=%ui" CRLF, &addr, port);
        ctx->replies++;
    }

    p = ngx_sprintf(p, "USER %V" CRLF "PASS %V" CRLF, login, passwd);

    /* the first command now, with a PROXY protocol header still waiting */

    ctx->next.data = ctx->send.data + ctx->send.len;
    ctx->next.len = p - ctx->next.data;

    ngx_mail_plus_upstream_next_command(ctx);

    return NGX_OK;
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

    p = ngx_pnalloc(c->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    local->data = p;
    local->len = ngx_sock_ntop(c->local_sockaddr, c->local_socklen, p,
                               NGX_SOCKADDR_STRLEN, 0);

    *addr = c->addr_text;
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

    ngx_mail_plus_upstream_connect(s);
}


/* no relay: the login was refused (text) or no backend answered (NULL) */

static void
ngx_mail_plus_upstream_fail(ngx_mail_session_t *s, ngx_str_t *text)
{
    ngx_str_t                   tmp;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    ngx_mail_plus_upstream_close(ctx);

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->user_limited) {
        ngx_mail_plus_limit_release(&ctx->user_key);
        ctx->user_limited = 0;
    }

    if (text == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "no backend available for \"%V\"", &s->login);

        ngx_str_set(&ctx->backend, "-");

        if (ctx->protocol == NGX_MAIL_PLUS_IMAP) {
            ngx_str_set(&tmp, "NO [UNAVAILABLE] Backend unavailable.");

        } else {
            ngx_str_set(&tmp, "-ERR [SYS/TEMP] Backend unavailable.");
        }

        text = &tmp;
    }

    ngx_str_set(&ctx->user, "-");

    ngx_mail_plus_proxy_reply(s, text, 1);
}


void
ngx_mail_plus_upstream_close(ngx_mail_plus_proxy_ctx_t *ctx)
{
    if (ctx->peer.connection) {
        ngx_close_connection(ctx->peer.connection);
        ctx->peer.connection = NULL;
    }
}
