
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * "router_proxy on" in a "protocol pop3" or "protocol imap" server: the
 * module takes the session over.  This file holds the directives, swaps
 * the server's protocol for the module's (ngx_mail_plus_pop3_protocol,
 * ngx_mail_plus_imap_protocol, with their handlers), reads the commands
 * before login into a buffer of router_proxy_command_size for both
 * protocols' dialogues (the reader, the SASL exchange, the replies out of
 * one reused buffer, the login kept and escaped), asks the router when
 * the client has given its credentials, takes and gives back the session
 * limits, and ends the session with one log line.
 */


static ngx_int_t ngx_mail_plus_proxy_create_ctx(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_uint_t protocol);
static ngx_int_t ngx_mail_plus_proxy_sasl_response(ngx_mail_session_t *s,
    ngx_str_t *text);
static void ngx_mail_plus_proxy_checked(ngx_mail_plus_check_t *check);
static void ngx_mail_plus_proxy_answer(ngx_mail_session_t *s);
static void ngx_mail_plus_proxy_delayed(ngx_event_t *ev);
static ngx_int_t ngx_mail_plus_proxy_acquire_client(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_proxy_acquire_user(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *key);
static void ngx_mail_plus_proxy_block(ngx_event_t *rev);
static void ngx_mail_plus_proxy_cleanup(void *data);
static void *ngx_mail_plus_proxy_create_conf(ngx_conf_t *cf);
static char *ngx_mail_plus_proxy_merge_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_command_t  ngx_mail_plus_proxy_commands[] = {

    { ngx_string("router_proxy"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, enable),
      NULL },

    { ngx_string("router_proxy_connect_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, connect_timeout),
      NULL },

    { ngx_string("router_proxy_login_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, login_timeout),
      NULL },

    { ngx_string("router_proxy_timeout"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, timeout),
      NULL },

    { ngx_string("router_proxy_buffer"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, buffer_size),
      NULL },

    { ngx_string("router_proxy_user_sessions"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, user_sessions),
      NULL },

    { ngx_string("router_proxy_client_sessions"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, client_sessions),
      NULL },

    { ngx_string("router_proxy_command_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, command_size),
      NULL },

    { ngx_string("router_proxy_literal_size"),
      NGX_MAIL_MAIN_CONF|NGX_MAIL_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_MAIL_SRV_CONF_OFFSET,
      offsetof(ngx_mail_plus_proxy_conf_t, literal_size),
      NULL },

      ngx_null_command
};


static ngx_mail_module_t  ngx_mail_plus_proxy_module_ctx = {
    NULL,                                  /* protocol */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_mail_plus_proxy_create_conf,       /* create server configuration */
    ngx_mail_plus_proxy_merge_conf         /* merge server configuration */
};


ngx_module_t  ngx_mail_plus_proxy_module = {
    NGX_MODULE_V1,
    &ngx_mail_plus_proxy_module_ctx,       /* module context */
    ngx_mail_plus_proxy_commands,          /* module directives */
    NGX_MAIL_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_mail_plus_proxy_ends[] = {
    ngx_string("client closed"),
    ngx_string("backend closed"),
    ngx_string("timed out"),
    ngx_string("error"),
    ngx_string("session limit"),
    ngx_string("quit before login")
};


#if (NGX_DEBUG)

/* by NGX_MAIL_PLUS_CMD_*, for debug lines */

static char  *ngx_mail_plus_proxy_command_names[] = {
    "unknown", "capability", "noop", "quit", "starttls", "authenticate",
    "login", "id", "user", "pass", "apop"
};

#endif


static u_char  ngx_mail_plus_sasl_next[] = "+ " CRLF;
static u_char  ngx_mail_plus_sasl_username[] = "+ VXNlcm5hbWU6" CRLF;
static u_char  ngx_mail_plus_sasl_password[] = "+ UGFzc3dvcmQ6" CRLF;


/* by protocol: NGX_MAIL_PLUS_IMAP, NGX_MAIL_PLUS_POP3 */

ngx_mail_plus_proxy_texts_t  ngx_mail_plus_proxy_texts[] = {

    { ngx_string("imap"),
      ngx_string("NO [LIMIT] Too many sessions."),
      ngx_string("NO [UNAVAILABLE] Temporary authentication failure."),
      ngx_string("NO [AUTHENTICATIONFAILED] Authentication failed."),
      ngx_string("NO [UNAVAILABLE] Backend unavailable.") },

    { ngx_string("pop3"),
      ngx_string("-ERR [IN-USE] Too many sessions."),
      ngx_string("-ERR [SYS/TEMP] Temporary authentication failure."),
      ngx_string("-ERR [AUTH] Authentication failed."),
      ngx_string("-ERR [SYS/TEMP] Backend unavailable.") }
};


/*
 * the protocols' init_session: the session's context, its cleanup, the
 * per-client session limit, then the greeting (or the refusal)
 */

void
ngx_mail_plus_proxy_init_session(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t protocol, ngx_str_t *greeting, ngx_str_t *refusal,
    ngx_event_handler_pt init_protocol)
{
    ngx_int_t                  rc;
    ngx_mail_core_srv_conf_t  *cscf;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    rc = ngx_mail_plus_proxy_create_ctx(s, c, protocol);

    if (rc == NGX_ERROR) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    if (rc == NGX_DECLINED) {
        s->out = *refusal;
        s->quit = 1;

    } else {
        s->out = *greeting;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: %V session, sending the %s",
                   &ngx_mail_plus_proxy_texts[protocol].name,
                   s->quit ? "refusal" : "greeting");

    c->read->handler = init_protocol;

    ngx_add_timer(c->read, cscf->timeout);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_send(c->write);
}


static ngx_int_t
ngx_mail_plus_proxy_create_ctx(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t protocol)
{
    ngx_pool_cleanup_t          *cln;
    ngx_mail_plus_proxy_ctx_t   *ctx;
    ngx_mail_plus_proxy_conf_t  *pcf;

    pcf = ngx_mail_get_module_srv_conf(s, ngx_mail_plus_proxy_module);

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_mail_plus_proxy_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_mail_plus_proxy_cleanup;
    cln->data = ctx;

    ctx->session = s;
    ctx->conf = pcf;
    ctx->protocol = protocol;
    ctx->start = ngx_current_msec;
    ctx->end = NGX_MAIL_PLUS_END_CLIENT;
    ngx_str_set(&ctx->user, "-");
    ngx_str_set(&ctx->backend, "-");

    ngx_mail_set_ctx(s, ctx, ngx_mail_plus_proxy_module);

    if (pcf->client_sessions == 0) {
        return NGX_OK;
    }

    return ngx_mail_plus_proxy_acquire_client(s, c, ctx);
}


/*
 * the protocols' init_protocol, also after STARTTLS: the command buffer
 * and the reader; NGX_ERROR when the session has gone
 */

ngx_int_t
ngx_mail_plus_proxy_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t           *c;
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    c->log->action = "in auth state";

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return NGX_ERROR;
    }

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (s->buffer == NULL) {
        s->buffer = ngx_create_temp_buf(c->pool, ctx->conf->command_size);
        if (s->buffer == NULL) {
            ngx_mail_session_internal_server_error(s);
            return NGX_ERROR;
        }
    }

    ngx_mail_plus_parse_init(&ctx->parse, ctx->protocol,
                             ctx->conf->literal_size);

    s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: auth state, buffer %uz, literals up to %uz",
                   ctx->conf->command_size, ctx->conf->literal_size);

    return NGX_OK;
}


/*
 * the dialogue before login, the same for both protocols: each command
 * read is answered by the protocol's "command", until one asks the router
 */

void
ngx_mail_plus_proxy_dialogue(ngx_event_t *rev,
    ngx_mail_plus_proxy_command_pt command, ngx_event_handler_pt handler)
{
    ngx_int_t                   rc;
    ngx_connection_t           *c;
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    for ( ;; ) {

        rc = ngx_mail_plus_proxy_read_command(rev);

        if (rc == NGX_AGAIN || rc == NGX_ERROR) {
            return;
        }

        rc = command(s, c, ctx, rc);

        if (rc == NGX_DONE) {
            s->out.len = 0;
            ngx_mail_plus_proxy_login(s, c);
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        if (ngx_mail_plus_proxy_flush(s, c, handler) != NGX_OK) {
            return;
        }
    }
}


/*
 * the start of the protocols' auth_state: NGX_AGAIN or NGX_ERROR when
 * there is nothing to do now, else what the reader found:
 * NGX_OK (a command or a SASL response), NGX_MAIL_PLUS_PARSE_LITERAL,
 * NGX_MAIL_PLUS_PARSE_INVALID, NGX_MAIL_PLUS_PARSE_CLOSE or
 * NGX_MAIL_PLUS_PARSE_TOO_LONG
 */

ngx_int_t
ngx_mail_plus_proxy_read_command(ngx_event_t *rev)
{
    size_t                      n;
    ssize_t                     r;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_connection_t           *c;
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    c = rev->data;
    s = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_close_connection(c);
        return NGX_ERROR;
    }

    if (s->out.len) {

        /* the reply before is still being sent */

        s->blocked = 1;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_mail_close_connection(c);
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    s->blocked = 0;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    b = s->buffer;

    for ( ;; ) {

        if (ngx_mail_plus_parse_idle(&ctx->parse)) {

            /* between commands: what is left moves to the start */

            n = b->last - b->pos;

            if (b->pos != b->start) {
                if (n) {
                    ngx_memmove(b->start, b->pos, n);
                }

                b->pos = b->start;
                b->last = b->start + n;
            }
        }

        if (b->pos < b->last) {
            rc = ngx_mail_plus_proxy_parse_command(s);

            if (rc != NGX_AGAIN) {
                ngx_log_debug4(NGX_LOG_DEBUG_MAIL, c->log, 0,
                               "proxy: read %i: %s, %ui arguments, state %ui",
                               rc,
                               ctx->parse.raw
                               ? "a SASL response"
                               : ngx_mail_plus_proxy_command_names[
                                                        ctx->parse.command],
                               ctx->parse.nargs, s->mail_state);
                return rc;
            }
        }

        if (b->last == b->end) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent too long command");
            return NGX_MAIL_PLUS_PARSE_TOO_LONG;
        }

        r = c->recv(c, b->last, b->end - b->last);

        if (r == NGX_ERROR || r == 0) {
            ngx_mail_close_connection(c);
            return NGX_ERROR;
        }

        if (r == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_mail_session_internal_server_error(s);
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        b->last += r;
    }
}


/* the protocols' parse_command: the module's reader over s->buffer */

ngx_int_t
ngx_mail_plus_proxy_parse_command(ngx_mail_session_t *s)
{
    ngx_int_t                   rc;
    ngx_mail_plus_parse_t      *p;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    p = &ctx->parse;

    if (ngx_mail_plus_parse_idle(p)) {
        p->raw = (s->mail_state >= NGX_MAIL_PLUS_STATE_PLAIN);
    }

    rc = ngx_mail_plus_parse(p, s->buffer);

    /* a SASL response keeps the tag of its AUTHENTICATE */

    if (rc != NGX_AGAIN && !p->raw && ctx->protocol == NGX_MAIL_PLUS_IMAP) {
        s->tag = p->tag;
    }

    return rc;
}


/*
 * after a command: the reply goes out, then the next command is read;
 * NGX_OK when the caller reads on now, NGX_DONE when an event brings it
 * back (the reply is being sent, STARTTLS, the session ends)
 */

ngx_int_t
ngx_mail_plus_proxy_flush(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_event_handler_pt handler)
{
    if (s->out.len == 0 && !s->quit) {
        return NGX_OK;
    }

    s->blocked = 0;

    ngx_mail_send(c->write);

    /* a reply with QUIT, or an error, closed the connection */

    if (c->destroyed || s->quit) {
        return NGX_DONE;
    }

    if (s->out.len) {
        s->blocked = 1;
        return NGX_DONE;
    }

    if (c->read->handler != handler) {

        /* STARTTLS: the handshake comes next */

        return NGX_DONE;
    }

    return NGX_OK;
}


/* which of a protocol's capability lists the client gets now */

ngx_str_t *
ngx_mail_plus_proxy_capability(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_str_t *plain, ngx_str_t *starttls, ngx_str_t *starttls_only)
{
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t  *sslcf;

    if (c->ssl == NULL) {
        sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);

        if (sslcf->starttls == NGX_MAIL_STARTTLS_ON) {
            return starttls;
        }

        if (sslcf->starttls == NGX_MAIL_STARTTLS_ONLY) {
            return starttls_only;
        }
    }
#endif

    return plain;
}


/*
 * STARTTLS: what the client sent after it is dropped (no command
 * injection into the TLS session), and so is what it said before
 */

ngx_int_t
ngx_mail_plus_proxy_starttls(ngx_mail_session_t *s, ngx_connection_t *c)
{
#if (NGX_MAIL_SSL)
    ngx_mail_ssl_conf_t        *sslcf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    if (c->ssl == NULL) {
        sslcf = ngx_mail_get_module_srv_conf(s, ngx_mail_ssl_module);
        if (sslcf->starttls) {
            ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

            s->buffer->pos = s->buffer->start;
            s->buffer->last = s->buffer->start;
            s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;
            ngx_str_null(&ctx->login);
            ngx_str_null(&s->login);

            ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                           "proxy: starttls, the dialogue starts again");

            c->read->handler = ngx_mail_starttls_handler;
            return NGX_OK;
        }
    }

#endif

    return NGX_MAIL_PARSE_INVALID_COMMAND;
}


/*
 * a login the client gave: kept as it is for the router (ctx->login), in
 * a pool of its own that the next login replaces, so that no number of
 * USER commands grows the session; s->login, which every log line of the
 * session prints, gets the escaped form
 */

ngx_int_t
ngx_mail_plus_proxy_set_login(ngx_mail_session_t *s, ngx_str_t *login)
{
    ngx_pool_t                 *pool;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    ngx_str_null(&s->login);
    ngx_str_null(&ctx->login);

    if (ctx->login_pool) {
        ngx_destroy_pool(ctx->login_pool);
        ctx->login_pool = NULL;
    }

    pool = ngx_create_pool(ngx_max(1024, 2 * NGX_MIN_POOL_SIZE),
                           s->connection->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ctx->login_pool = pool;

    ctx->login.data = ngx_pstrdup(pool, login);
    if (ctx->login.data == NULL) {
        return NGX_ERROR;
    }

    ctx->login.len = login->len;

    if (ngx_mail_plus_text_log(pool, &ctx->login, &s->login) != NGX_OK) {
        ngx_str_null(&ctx->login);
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: login \"%V\" given", &s->login);

    return NGX_OK;
}


/* room for a reply: one buffer for the session, grown by doubling */

u_char *
ngx_mail_plus_proxy_out(ngx_mail_session_t *s, size_t len)
{
    size_t                      size;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (ctx->out_size >= len) {
        return ctx->out;
    }

    size = ngx_max(len, ngx_max(2 * ctx->out_size, 256));

    if (ctx->out) {
        ngx_pfree(s->connection->pool, ctx->out);
    }

    ctx->out = ngx_pnalloc(s->connection->pool, size);
    if (ctx->out == NULL) {
        ctx->out_size = 0;
        return NULL;
    }

    ctx->out_size = size;

    return ctx->out;
}


/*
 * a reply: untagged lines, the text (IMAP: after the command's tag, when
 * tagged) and its CRLF, and a line after it
 */

ngx_int_t
ngx_mail_plus_proxy_say(ngx_mail_session_t *s, ngx_str_t *untagged,
    ngx_uint_t tagged, ngx_str_t *text, ngx_str_t *tail)
{
    u_char                     *p;
    size_t                      len;
    ngx_str_t                   tag;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    ngx_str_null(&tag);

    if (tagged && ctx->protocol == NGX_MAIL_PLUS_IMAP) {
        if (s->tag.len) {
            tag = s->tag;

        } else {
            ngx_str_set(&tag, "* ");
        }
    }

    len = tag.len + text->len + 2;

    if (untagged) {
        len += untagged->len;
    }

    if (tail) {
        len += tail->len;
    }

    p = ngx_mail_plus_proxy_out(s, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->out.data = p;

    if (untagged) {
        p = ngx_cpymem(p, untagged->data, untagged->len);
    }

    if (tag.len) {
        p = ngx_cpymem(p, tag.data, tag.len);
    }

    p = ngx_cpymem(p, text->data, text->len);
    *p++ = CR; *p++ = LF;

    if (tail) {
        p = ngx_cpymem(p, tail->data, tail->len);
    }

    s->out.len = p - s->out.data;

    return NGX_OK;
}


/*
 * AUTH (POP3) and AUTHENTICATE (IMAP): the mechanism in args[0], an
 * initial response ("=" for an empty one) in args[1]; PLAIN and LOGIN,
 * and CRAM-MD5 (no initial response) when "methods" has it; EXTERNAL
 * needs what the router does not keep.  Returns NGX_MAIL_PLUS_SASL_*.
 */

ngx_int_t
ngx_mail_plus_proxy_sasl_start(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_uint_t methods)
{
    u_char                     *p;
    size_t                      len;
    ngx_str_t                  *mech, ir, salt;
    ngx_mail_plus_parse_t      *parse;
    ngx_mail_core_srv_conf_t   *cscf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    parse = &ctx->parse;

    if (parse->nargs < 1 || parse->nargs > 2) {
        return NGX_MAIL_PLUS_SASL_SYNTAX;
    }

    mech = &parse->args[0];
    ngx_str_null(&ir);

    if (parse->nargs == 2) {
        ir = parse->args[1];

        if (ir.len == 1 && ir.data[0] == '=') {
            ir.len = 0;
        }
    }

    /* the responses come on lines of their own: the tag must outlive them */

    if (ctx->protocol == NGX_MAIL_PLUS_IMAP && s->tag.len) {
        if (ctx->tag_size < s->tag.len) {
            len = ngx_max(s->tag.len, 2 * ctx->tag_size);

            p = ngx_pnalloc(c->pool, len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (ctx->tag) {
                ngx_pfree(c->pool, ctx->tag);
            }

            ctx->tag = p;
            ctx->tag_size = len;
        }

        ngx_memcpy(ctx->tag, s->tag.data, s->tag.len);
        s->tag.data = ctx->tag;
    }

    switch (ngx_mail_plus_proxy_token_mech(s, mech)) {

    case NGX_MAIL_PLUS_SASL_OAUTHBEARER:
        s->mail_state = NGX_MAIL_PLUS_STATE_OAUTHBEARER;
        break;

    case NGX_MAIL_PLUS_SASL_XOAUTH2:
        s->mail_state = NGX_MAIL_PLUS_STATE_XOAUTH2;
        break;

    default:
        break;
    }

    if (s->mail_state >= NGX_MAIL_PLUS_STATE_OAUTHBEARER) {
        if (parse->nargs == 2) {
            return ngx_mail_plus_proxy_sasl_response(s, &ir);
        }

        ngx_str_set(&s->out, ngx_mail_plus_sasl_next);
        return NGX_MAIL_PLUS_SASL_NEXT;
    }

    if (mech->len == 5 && ngx_strncasecmp(mech->data, (u_char *) "PLAIN", 5)
                          == 0
        && (methods & NGX_MAIL_AUTH_PLAIN_ENABLED))
    {
        s->mail_state = NGX_MAIL_PLUS_STATE_PLAIN;

        if (parse->nargs == 2) {
            return ngx_mail_plus_proxy_sasl_response(s, &ir);
        }

        ngx_str_set(&s->out, ngx_mail_plus_sasl_next);
        return NGX_MAIL_PLUS_SASL_NEXT;
    }

    if (mech->len == 5 && ngx_strncasecmp(mech->data, (u_char *) "LOGIN", 5)
                          == 0
        && (methods & NGX_MAIL_AUTH_LOGIN_ENABLED))
    {
        s->mail_state = NGX_MAIL_PLUS_STATE_LOGIN_USER;

        if (parse->nargs == 2) {
            return ngx_mail_plus_proxy_sasl_response(s, &ir);
        }

        ngx_str_set(&s->out, ngx_mail_plus_sasl_username);
        return NGX_MAIL_PLUS_SASL_NEXT;
    }

    if (mech->len == 8
        && ngx_strncasecmp(mech->data, (u_char *) "CRAM-MD5", 8) == 0
        && (methods & NGX_MAIL_AUTH_CRAM_MD5_ENABLED))
    {
        if (parse->nargs == 2) {
            return NGX_MAIL_PLUS_SASL_SYNTAX;
        }

        /* the challenge is the salt, encoded once for the session */

        if (ctx->challenge.data == NULL) {
            if (s->salt.data == NULL) {
                cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

                if (ngx_mail_salt(s, c, cscf) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            salt.data = s->salt.data;
            salt.len = s->salt.len - 2;

            p = ngx_pnalloc(c->pool,
                            2 + ngx_base64_encoded_length(salt.len) + 2);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ctx->challenge.data = p;

            *p++ = '+'; *p++ = ' ';

            ir.data = p;
            ngx_encode_base64(&ir, &salt);
            p += ir.len;

            *p++ = CR; *p++ = LF;

            ctx->challenge.len = p - ctx->challenge.data;
        }

        s->out = ctx->challenge;
        s->mail_state = NGX_MAIL_PLUS_STATE_CRAM_MD5;

        return NGX_MAIL_PLUS_SASL_NEXT;
    }

    return NGX_MAIL_PLUS_SASL_UNSUPPORTED;
}


/* a SASL response line */

ngx_int_t
ngx_mail_plus_proxy_sasl_step(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (s->mail_state == NGX_MAIL_PLUS_STATE_TOKEN_ERROR) {

        /* "\x01" as RFC 7628 asks, or anything else: the failure */

        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: the answer to the token's error");

        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;
        return NGX_MAIL_PLUS_SASL_FAILED;
    }

    if (ctx->parse.args[0].len == 1 && ctx->parse.args[0].data[0] == '*') {
        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;
        return NGX_MAIL_PLUS_SASL_CANCEL;
    }

    return ngx_mail_plus_proxy_sasl_response(s, &ctx->parse.args[0]);
}


static ngx_int_t
ngx_mail_plus_proxy_sasl_response(ngx_mail_session_t *s, ngx_str_t *text)
{
    ngx_int_t                   rc;
    ngx_str_t                   login, passwd, response;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    response = *text;

    switch (s->mail_state) {

    case NGX_MAIL_PLUS_STATE_PLAIN:
        rc = ngx_mail_plus_sasl_plain(&response, &login, &passwd);
        break;

    case NGX_MAIL_PLUS_STATE_LOGIN_USER:
        rc = ngx_mail_plus_sasl_login(&response, &login);
        break;

    case NGX_MAIL_PLUS_STATE_LOGIN_PASS:
        rc = ngx_mail_plus_sasl_login(&response, &passwd);
        break;

    case NGX_MAIL_PLUS_STATE_OAUTHBEARER:
        rc = ngx_mail_plus_sasl_oauthbearer(&response, &login, &passwd);
        break;

    case NGX_MAIL_PLUS_STATE_XOAUTH2:
        rc = ngx_mail_plus_sasl_xoauth2(&response, &login, &passwd);
        break;

    default: /* NGX_MAIL_PLUS_STATE_CRAM_MD5 */
        rc = ngx_mail_plus_sasl_cram_md5(&response, &login, &passwd);
        break;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: sasl state %ui: %i",
                   s->mail_state, rc);

    if (rc != NGX_OK) {
        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;

        return (rc == NGX_ABORT) ? NGX_MAIL_PLUS_SASL_AUTHZID
                                 : NGX_MAIL_PLUS_SASL_BAD;
    }

    switch (s->mail_state) {

    case NGX_MAIL_PLUS_STATE_LOGIN_USER:
        if (ngx_mail_plus_proxy_set_login(s, &login) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_str_set(&s->out, ngx_mail_plus_sasl_password);
        s->mail_state = NGX_MAIL_PLUS_STATE_LOGIN_PASS;

        return NGX_MAIL_PLUS_SASL_NEXT;

    case NGX_MAIL_PLUS_STATE_LOGIN_PASS:

        /* the login was kept by the step before */

        break;

    case NGX_MAIL_PLUS_STATE_CRAM_MD5:
        if (ngx_mail_plus_proxy_set_login(s, &login) != NGX_OK) {
            return NGX_ERROR;
        }

        s->auth_method = NGX_MAIL_AUTH_CRAM_MD5;
        break;

    case NGX_MAIL_PLUS_STATE_OAUTHBEARER:
    case NGX_MAIL_PLUS_STATE_XOAUTH2:

        /* the user, if the client named one; the token is the password */

        if (ngx_mail_plus_proxy_set_login(s, &login) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
        ctx->token_sasl = (s->mail_state == NGX_MAIL_PLUS_STATE_OAUTHBEARER)
                          ? NGX_MAIL_PLUS_SASL_OAUTHBEARER
                          : NGX_MAIL_PLUS_SASL_XOAUTH2;
        break;

    default: /* NGX_MAIL_PLUS_STATE_PLAIN */
        if (ngx_mail_plus_proxy_set_login(s, &login) != NGX_OK) {
            return NGX_ERROR;
        }

        break;
    }

    /* the router copies the password at once: it may stay in the buffer */

    s->passwd = passwd;
    s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;

    return NGX_MAIL_PLUS_SASL_DONE;
}


/* the client has given a login and a password: ask the router */

void
ngx_mail_plus_proxy_login(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_int_t                   rc;
    ngx_mail_plus_check_t      *check;
    ngx_mail_plus_main_conf_t  *mpcf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    mpcf = ngx_mail_get_module_main_conf(s, ngx_mail_plus_module);

    c->log->action = "asking the router";

    s->login_attempt++;

    check = ngx_mail_plus_check_create(mpcf, c->log);
    if (check == NULL) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    ctx->check = check;
    check->handler = ngx_mail_plus_proxy_checked;
    check->data = s;

    /* the login as the client gave it, s->login is its escaped form */

    if (ctx->token_sasl) {
        rc = ngx_mail_plus_check_set_token(check, ctx->protocol, &ctx->login,
                                           &s->passwd, ctx->token_sasl,
                                           &c->addr_text);
        ctx->token_sasl = 0;

    } else {
        rc = ngx_mail_plus_check_set(check, ctx->protocol, &ctx->login,
                                     &s->passwd, &c->addr_text);
    }

    if (rc != NGX_OK) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    /* APOP and CRAM-MD5: the password is the client's digest of the salt */

    if ((s->auth_method == NGX_MAIL_AUTH_APOP
         || s->auth_method == NGX_MAIL_AUTH_CRAM_MD5)
        && ngx_mail_plus_check_set_digest(check, s->auth_method, &s->salt)
           != NGX_OK)
    {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    s->auth_method = NGX_MAIL_AUTH_PLAIN;

    ngx_str_null(&s->passwd);

    /* the client is not read while the router and the backend work */

    c->read->handler = ngx_mail_plus_proxy_block;

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: login \"%V\" to the router, attempt %ui",
                   &s->login, s->login_attempt);

    rc = ngx_mail_plus_check_start(check);

    if (rc == NGX_AGAIN) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: login check posted, waiting");
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_mail_session_internal_server_error(s);
        return;
    }

    ngx_mail_plus_proxy_answer(s);
}


static void
ngx_mail_plus_proxy_checked(ngx_mail_plus_check_t *check)
{
    ngx_mail_plus_proxy_answer(check->data);
}


static void
ngx_mail_plus_proxy_answer(ngx_mail_session_t *s)
{
    time_t                        delay;
    ngx_connection_t             *c;
    ngx_mail_plus_route_t        *route;
    ngx_mail_plus_proxy_ctx_t    *ctx;
    ngx_mail_plus_proxy_texts_t  *texts;

    c = s->connection;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    route = &ctx->check->route;
    texts = &ngx_mail_plus_proxy_texts[ctx->protocol];

    switch (route->status) {

    case NGX_MAIL_PLUS_ALLOW:

        ngx_log_debug3(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: login \"%V\" allowed, pool \"%V\" server %V",
                       &s->login, &route->pool->name, &route->server->name);

        /*
         * the login's pool goes away after login; the log keeps this, in
         * the escaped form s->login holds
         */

        if (route->token
            && ngx_mail_plus_text_log(ctx->login_pool ? ctx->login_pool
                                                       : c->pool,
                                      &ctx->check->auth.login, &s->login)
               != NGX_OK)
        {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        ctx->user.len = s->login.len;
        ctx->user.data = ngx_pstrdup(c->pool, &s->login);
        if (ctx->user.data == NULL) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        s->login = ctx->user;

        switch (ngx_mail_plus_proxy_acquire_user(s, ctx, &route->key)) {

        case NGX_OK:
            break;

        case NGX_BUSY:
            ngx_mail_plus_check_free(ctx->check);
            ctx->check = NULL;

            ngx_mail_plus_proxy_reply(s, &texts->too_many, 1);
            return;

        default:
            ngx_mail_session_internal_server_error(s);
            return;
        }

        ngx_mail_plus_upstream_connect(s);
        return;

    case NGX_MAIL_PLUS_DENY:

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "login \"%V\" denied: %V", &s->login, &route->reason);

        ctx->token_refused = route->bad_token;

        /* the router's delay: it grows with the failures it counted */

        delay = route->delay;

        ngx_log_debug1(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: refusal delayed %T s", delay);

        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;

        ctx->delay.handler = ngx_mail_plus_proxy_delayed;
        ctx->delay.data = s;
        ctx->delay.log = c->log;

        if (delay) {
            ngx_add_timer(&ctx->delay, (ngx_msec_t) delay * 1000);
            return;
        }

        ngx_mail_plus_proxy_delayed(&ctx->delay);
        return;

    default: /* NGX_MAIL_PLUS_TEMPFAIL */

        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "login \"%V\" failed temporarily: %V",
                      &s->login, &route->reason);

        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;

        ngx_mail_plus_proxy_reply(s, &texts->tempfail, 1);
        return;
    }
}


static void
ngx_mail_plus_proxy_delayed(ngx_event_t *ev)
{
    ngx_mail_session_t         *s;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    s = ev->data;
    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);

    if (ctx->token_refused) {
        ctx->token_refused = 0;
        ngx_mail_plus_proxy_token_refused(s);
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: refusal sent");

    ngx_mail_plus_proxy_reply(s,
                              &ngx_mail_plus_proxy_texts[ctx->protocol].failed,
                              1);
}


/*
 * The session limits of router_proxy_client_sessions and
 * router_proxy_user_sessions are taken and given back in this file only:
 * the client's when the session starts, the user's when the router has
 * allowed the login; both when the session ends, and the user's at once
 * when the login leads to no relay (ngx_mail_plus_proxy_release_user()).
 *
 * The client's: NGX_OK (taken, or not counted), NGX_DECLINED (over the
 * limit), NGX_ERROR.
 */

static ngx_int_t
ngx_mail_plus_proxy_acquire_client(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    /* the client's network, as "router_client_prefix" sets it */

    ctx->client_key.data = ngx_pnalloc(c->pool,
                                       2 + NGX_MAIL_PLUS_CLIENT_KEY_LEN);
    if (ctx->client_key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->client_key.data, "c:", 2);

    ctx->client_key.len = 2 + ngx_mail_plus_client_key(
                                  ngx_mail_get_module_main_conf(s,
                                                        ngx_mail_plus_module),
                                  c->sockaddr, ctx->client_key.data + 2);

    switch (ngx_mail_plus_limit_acquire(&ctx->client_key,
                                        ctx->conf->client_sessions, c->log))
    {
    case NGX_OK:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: client session limit taken");
        ctx->client_limited = 1;
        return NGX_OK;

    case NGX_DONE:
        return NGX_OK;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "too many sessions from %V", &c->addr_text);
        ctx->end = NGX_MAIL_PLUS_END_LIMIT;
        return NGX_DECLINED;

    default:
        return NGX_ERROR;
    }
}


/* the user's: NGX_OK (taken, not counted, or no limit), NGX_BUSY, NGX_ERROR */

static ngx_int_t
ngx_mail_plus_proxy_acquire_user(ngx_mail_session_t *s,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_str_t *key)
{
    ngx_connection_t  *c;

    if (ctx->conf->user_sessions == 0) {
        return NGX_OK;
    }

    c = s->connection;

    ctx->user_key.len = 2 + key->len;
    ctx->user_key.data = ngx_pnalloc(c->pool, ctx->user_key.len);
    if (ctx->user_key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(ctx->user_key.data, "u:", 2), key->data, key->len);

    switch (ngx_mail_plus_limit_acquire(&ctx->user_key,
                                        ctx->conf->user_sessions, c->log))
    {
    case NGX_OK:
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: user session limit taken");
        ctx->user_limited = 1;
        return NGX_OK;

    case NGX_DONE:
        return NGX_OK;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "too many sessions of \"%V\"", &ctx->user);
        return NGX_BUSY;

    default:
        return NGX_ERROR;
    }
}


void
ngx_mail_plus_proxy_release_user(ngx_mail_plus_proxy_ctx_t *ctx)
{
    if (ctx->user_limited) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, ctx->session->connection->log, 0,
                       "proxy: user session limit released");

        ngx_mail_plus_limit_release(&ctx->user_key);
        ctx->user_limited = 0;
    }
}


/*
 * a reply to a login that did not lead to a relay; the dialogue goes on
 * where it was before the login (IMAP replies get the command's tag)
 */

void
ngx_mail_plus_proxy_reply(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_uint_t tagged)
{
    ngx_connection_t  *c;

    c = s->connection;

    c->log->action = "in auth state";

    ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: no relay after the login, auth state again");

    ngx_mail_plus_proxy_resume(s, text, tagged, NGX_MAIL_PLUS_STATE_COMMAND);
}


/*
 * the reply, then the dialogue reads on in "state"; a SASL exchange that
 * goes on keeps its tag
 */

void
ngx_mail_plus_proxy_resume(ngx_mail_session_t *s, ngx_str_t *text,
    ngx_uint_t tagged, ngx_uint_t state)
{
    ngx_connection_t          *c;
    ngx_mail_core_srv_conf_t  *cscf;

    c = s->connection;
    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    if (ngx_mail_plus_proxy_say(s, NULL, tagged, text, NULL) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    s->mail_state = state;

    if (state == NGX_MAIL_PLUS_STATE_COMMAND) {
        s->tag.len = 0;
    }

    if (s->buffer->pos == s->buffer->last) {
        s->buffer->pos = s->buffer->start;
        s->buffer->last = s->buffer->start;
    }

    s->blocked = (s->buffer->pos < s->buffer->last || c->read->ready);

    c->read->handler = cscf->protocol->auth_state;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_mail_close_connection(c);
        return;
    }

    ngx_mail_send(c->write);
}


/* the client is not read while the router or a backend is asked */

static void
ngx_mail_plus_proxy_block(ngx_event_t *rev)
{
    ngx_connection_t    *c;
    ngx_mail_session_t  *s;

    c = rev->data;
    s = c->data;

    if (rev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_mail_plus_proxy_finalize(s, NGX_MAIL_PLUS_END_TIMEOUT);
    }
}


void
ngx_mail_plus_proxy_finalize(ngx_mail_session_t *s, ngx_uint_t end)
{
    ngx_mail_plus_proxy_ctx_t  *ctx;

    ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
    ctx->end = end;

    ngx_log_debug1(NGX_LOG_DEBUG_MAIL, s->connection->log, 0,
                   "proxy: session ends: %V", &ngx_mail_plus_proxy_ends[end]);

    ngx_mail_close_connection(s->connection);
}


/*
 * runs when the client connection's pool goes, whoever closed it (the
 * stock helpers close sessions themselves on errors): what the session
 * took is given back here, and its log line written
 */

static void
ngx_mail_plus_proxy_cleanup(void *data)
{
    ngx_mail_plus_proxy_ctx_t *ctx = data;

    ngx_msec_t              ms;
    ngx_connection_t       *c;
    ngx_mail_session_t     *s;
    ngx_mail_plus_stats_t  *stats;

    s = ctx->session;
    c = s->connection;

    if (ctx->check) {
        ngx_mail_plus_check_free(ctx->check);
        ctx->check = NULL;
    }

    if (ctx->delay.timer_set) {
        ngx_del_timer(&ctx->delay);
    }

    ngx_mail_plus_upstream_close(ctx);

    ngx_mail_plus_proxy_release_user(ctx);

    if (ctx->client_limited) {
        ngx_log_debug0(NGX_LOG_DEBUG_MAIL, c->log, 0,
                       "proxy: client session limit released");

        ngx_mail_plus_limit_release(&ctx->client_key);
        ctx->client_limited = 0;
    }

    stats = ngx_mail_plus_zone_stats();

    if (ctx->logged_in && stats) {
        (void) ngx_atomic_fetch_add(&stats->active[ctx->protocol],
                                    (ngx_atomic_int_t) -1);
    }

    if (!ctx->logged_in && ctx->end == NGX_MAIL_PLUS_END_CLIENT && s->quit) {
        ctx->end = NGX_MAIL_PLUS_END_QUIT;
    }

    if (c->timedout) {
        ctx->end = NGX_MAIL_PLUS_END_TIMEOUT;
    }

    ms = ngx_current_msec - ctx->start;

    c->log->action = NULL;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "mail session: %V client=%V user=\"%V\" backend=%V "
                  "up=%O down=%O time=%M.%03Ms end=\"%V\"",
                  &ngx_mail_plus_proxy_texts[ctx->protocol].name, &c->addr_text,
                  &ctx->user, &ctx->backend, ctx->up.bytes, ctx->down.bytes,
                  ms / 1000, ms % 1000, &ngx_mail_plus_proxy_ends[ctx->end]);

    /* nothing logs the login after this */

    ngx_str_null(&s->login);
    ngx_str_null(&ctx->login);

    if (ctx->login_pool) {
        ngx_destroy_pool(ctx->login_pool);
        ctx->login_pool = NULL;
    }
}


static void *
ngx_mail_plus_proxy_create_conf(ngx_conf_t *cf)
{
    ngx_mail_plus_proxy_conf_t  *pcf;

    pcf = ngx_palloc(cf->pool, sizeof(ngx_mail_plus_proxy_conf_t));
    if (pcf == NULL) {
        return NULL;
    }

    pcf->enable = NGX_CONF_UNSET;
    pcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    pcf->login_timeout = NGX_CONF_UNSET_MSEC;
    pcf->timeout = NGX_CONF_UNSET_MSEC;
    pcf->buffer_size = NGX_CONF_UNSET_SIZE;
    pcf->user_sessions = NGX_CONF_UNSET_UINT;
    pcf->client_sessions = NGX_CONF_UNSET_UINT;
    pcf->command_size = NGX_CONF_UNSET_SIZE;
    pcf->literal_size = NGX_CONF_UNSET_SIZE;

    return pcf;
}


static char *
ngx_mail_plus_proxy_merge_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_mail_plus_proxy_conf_t *prev = parent;
    ngx_mail_plus_proxy_conf_t *conf = child;

    ngx_uint_t                  inherited;
    ngx_mail_core_srv_conf_t   *cscf;
    ngx_mail_plus_main_conf_t  *mpcf;

    inherited = (conf->enable == NGX_CONF_UNSET);

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              10000);
    ngx_conf_merge_msec_value(conf->login_timeout, prev->login_timeout,
                              30000);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 30 * 60000);
    ngx_conf_merge_size_value(conf->buffer_size, prev->buffer_size,
                              32768);
    ngx_conf_merge_uint_value(conf->user_sessions, prev->user_sessions, 0);
    ngx_conf_merge_uint_value(conf->client_sessions, prev->client_sessions,
                              0);

    ngx_conf_merge_size_value(conf->command_size, prev->command_size, 8192);
    ngx_conf_merge_size_value(conf->literal_size, prev->literal_size, 4096);

    if (conf->command_size < 512) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_proxy_command_size\" must be at "
                           "least 512");
        return NGX_CONF_ERROR;
    }

    if (conf->literal_size > 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_proxy_literal_size\" must be at "
                           "most 1m");
        return NGX_CONF_ERROR;
    }

    if (conf->buffer_size < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_proxy_buffer\" must be at least 1k");
        return NGX_CONF_ERROR;
    }

    if (ngx_mail_plus_proxy_token_conf(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    cscf = ngx_mail_conf_get_module_srv_conf(cf, ngx_mail_core_module);

    if (cscf->protocol == NULL) {

        /* the mail{} level: the servers decide */

        return NGX_CONF_OK;
    }

    mpcf = ngx_mail_conf_get_module_main_conf(cf, ngx_mail_plus_module);

    if (mpcf->pools.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"router_proxy\" needs a \"router_pool\"");
        return NGX_CONF_ERROR;
    }

    switch (cscf->protocol->type) {

    case NGX_MAIL_POP3_PROTOCOL:
        cscf->protocol = &ngx_mail_plus_pop3_protocol;
        break;

    case NGX_MAIL_IMAP_PROTOCOL:
        cscf->protocol = &ngx_mail_plus_imap_protocol;
        break;

    default:

        /* "router_proxy on" in mail{} leaves SMTP servers alone */

        if (inherited) {
            conf->enable = 0;
            return NGX_CONF_OK;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"router_proxy\" is for pop3 and imap servers, "
                      "not for the server in %s:%ui",
                      cscf->file_name, cscf->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
