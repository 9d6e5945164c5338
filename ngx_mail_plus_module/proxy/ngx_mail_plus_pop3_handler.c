
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The POP3 dialogue before login, in a "router_proxy on" server: the
 * module's reader (ngx_mail_plus_proxy_parse.c) and SASL decoding, the
 * stock pop3_* settings (capabilities, pop3_auth), and the router instead
 * of auth_http.  APOP and CRAM-MD5 (when pop3_auth lists them: the
 * greeting then carries the salt) are checked by the router against a
 * cleartext password.
 *
 * Commands are answered in the order they came, one reply each; a client
 * that pipelines is read on as soon as a reply is out.  USER keeps its
 * login in a pool of its own (the next USER replaces it), so that no
 * number of commands grows the session.  Invalid commands count against
 * max_errors; at the limit the session is closed.
 */


static void ngx_mail_plus_pop3_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_plus_pop3_init_protocol(ngx_event_t *rev);
static void ngx_mail_plus_pop3_auth_state(ngx_event_t *rev);
static ngx_int_t ngx_mail_plus_pop3_command(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_proxy_ctx_t *ctx, ngx_int_t rc);
static ngx_int_t ngx_mail_plus_pop3_auth(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_proxy_ctx_t *ctx);
static ngx_int_t ngx_mail_plus_pop3_sasl(ngx_mail_session_t *s,
    ngx_int_t rc);
static ngx_int_t ngx_mail_plus_pop3_error(ngx_mail_session_t *s,
    char *text);


static ngx_str_t  pop3_greeting = ngx_string("+OK POP3 ready" CRLF);
static u_char  pop3_ok[] = "+OK" CRLF;
static ngx_str_t  pop3_limit =
    ngx_string("-ERR [SYS/TEMP] Too many sessions." CRLF);


/*
 * the protocol a "router_proxy on" server switches to; never registered by
 * name, so that "protocol pop3" keeps meaning the stock one
 */

ngx_mail_protocol_t  ngx_mail_plus_pop3_protocol = {
    ngx_string("pop3"),
    ngx_string("\x04pop3"),
    { 110, 995, 0, 0 },
    NGX_MAIL_POP3_PROTOCOL,

    ngx_mail_plus_pop3_init_session,
    ngx_mail_plus_pop3_init_protocol,
    ngx_mail_plus_proxy_parse_command,
    ngx_mail_plus_pop3_auth_state,

    ngx_string("-ERR internal server error" CRLF),
    ngx_string("-ERR SSL certificate error" CRLF),
    ngx_string("-ERR No required SSL certificate" CRLF)
};


static void
ngx_mail_plus_pop3_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    u_char                    *p;
    ngx_str_t                  greeting;
    ngx_mail_core_srv_conf_t  *cscf;
    ngx_mail_pop3_srv_conf_t  *pscf;

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    greeting = pop3_greeting;

    if (pscf->auth_methods
        & (NGX_MAIL_AUTH_APOP_ENABLED|NGX_MAIL_AUTH_CRAM_MD5_ENABLED))
    {
        cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

        if (ngx_mail_salt(s, c, cscf) != NGX_OK) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        /* "+OK POP3 ready <salt>" */

        greeting.len = pop3_greeting.len - 1 + s->salt.len;
        greeting.data = ngx_pnalloc(c->pool, greeting.len);
        if (greeting.data == NULL) {
            ngx_mail_session_internal_server_error(s);
            return;
        }

        p = ngx_cpymem(greeting.data, pop3_greeting.data,
                       pop3_greeting.len - 2);
        *p++ = ' ';
        ngx_memcpy(p, s->salt.data, s->salt.len);
    }

    ngx_mail_plus_proxy_init_session(s, c, NGX_MAIL_PLUS_POP3,
                                     &greeting, &pop3_limit,
                                     ngx_mail_plus_pop3_init_protocol);
}


static void
ngx_mail_plus_pop3_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t  *c;

    c = rev->data;

    if (ngx_mail_plus_proxy_init_protocol(rev) != NGX_OK) {
        return;
    }

    c->read->handler = ngx_mail_plus_pop3_auth_state;

    ngx_mail_plus_pop3_auth_state(rev);
}


static void
ngx_mail_plus_pop3_auth_state(ngx_event_t *rev)
{
    ngx_mail_plus_proxy_dialogue(rev, ngx_mail_plus_pop3_command,
                                 ngx_mail_plus_pop3_auth_state);
}


/* NGX_OK: s->out is the reply; NGX_DONE: ask the router; NGX_ERROR */

static ngx_int_t
ngx_mail_plus_pop3_command(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_int_t rc)
{
    ngx_mail_plus_parse_t     *p;
    ngx_mail_pop3_srv_conf_t  *pscf;

    p = &ctx->parse;

    ngx_str_set(&s->out, pop3_ok);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_MAIL_PLUS_PARSE_TOO_LONG:
        ngx_str_set(&s->out, "-ERR Command too long." CRLF);
        s->quit = 1;
        ctx->end = NGX_MAIL_PLUS_END_ERROR;
        return NGX_OK;

    default: /* NGX_MAIL_PLUS_PARSE_INVALID */
        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;
        return ngx_mail_plus_pop3_error(s, "-ERR invalid command");
    }

    if (s->mail_state >= NGX_MAIL_PLUS_STATE_PLAIN) {
        return ngx_mail_plus_pop3_sasl(s, ngx_mail_plus_proxy_sasl_step(s, c));
    }

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: pop3 command %ui, state %ui",
                   p->command, s->mail_state);

    switch (p->command) {

    case NGX_MAIL_PLUS_CMD_USER:

#if (NGX_MAIL_SSL)
        if (ngx_mail_starttls_only(s, c)) {
            break;
        }
#endif

        if (!(pscf->auth_methods & NGX_MAIL_AUTH_PLAIN_ENABLED)
            || p->nargs != 1)
        {
            break;
        }

        if (ngx_mail_plus_proxy_set_login(s, &p->args[0]) != NGX_OK) {
            return NGX_ERROR;
        }

        s->mail_state = NGX_MAIL_PLUS_STATE_USER;
        return NGX_OK;

    case NGX_MAIL_PLUS_CMD_PASS:

        /* the password is all the line has after "PASS " */

        if (s->mail_state != NGX_MAIL_PLUS_STATE_USER || p->rest.len == 0) {
            break;
        }

        s->passwd = p->rest;
        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;
        return NGX_DONE;

    case NGX_MAIL_PLUS_CMD_APOP:

#if (NGX_MAIL_SSL)
        if (ngx_mail_starttls_only(s, c)) {
            break;
        }
#endif

        if (!(pscf->auth_methods & NGX_MAIL_AUTH_APOP_ENABLED)
            || p->nargs != 2)
        {
            break;
        }

        if (ngx_mail_plus_proxy_set_login(s, &p->args[0]) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the digest: the router copies it */

        s->passwd = p->args[1];
        s->auth_method = NGX_MAIL_AUTH_APOP;
        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;
        return NGX_DONE;

    case NGX_MAIL_PLUS_CMD_CAPA:
        s->out = *ngx_mail_plus_proxy_token_capability(s,
                      ngx_mail_plus_proxy_capability(s, c, &pscf->capability,
                                              &pscf->starttls_capability,
                                              &pscf->starttls_only_capability));
        return NGX_OK;

    case NGX_MAIL_PLUS_CMD_AUTH:
        return ngx_mail_plus_pop3_auth(s, c, ctx);

    case NGX_MAIL_PLUS_CMD_QUIT:
        s->quit = 1;
        return NGX_OK;

    case NGX_MAIL_PLUS_CMD_NOOP:
        return NGX_OK;

    case NGX_MAIL_PLUS_CMD_STARTTLS:
        if (ngx_mail_plus_proxy_starttls(s, c) == NGX_OK) {
            return NGX_OK;
        }

        break;
    }

    s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;

    return ngx_mail_plus_pop3_error(s, "-ERR invalid command");
}


static ngx_int_t
ngx_mail_plus_pop3_auth(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_proxy_ctx_t *ctx)
{
    ngx_mail_pop3_srv_conf_t  *pscf;

#if (NGX_MAIL_SSL)
    if (ngx_mail_starttls_only(s, c)) {
        return ngx_mail_plus_pop3_error(s, "-ERR invalid command");
    }
#endif

    pscf = ngx_mail_get_module_srv_conf(s, ngx_mail_pop3_module);

    s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;

    if (ctx->parse.nargs == 0) {
        s->out = *ngx_mail_plus_proxy_token_capability(s,
                                                      &pscf->auth_capability);
        return NGX_OK;
    }

    return ngx_mail_plus_pop3_sasl(s,
               ngx_mail_plus_proxy_sasl_start(s, c, pscf->auth_methods));
}


static ngx_int_t
ngx_mail_plus_pop3_sasl(ngx_mail_session_t *s, ngx_int_t rc)
{
    switch (rc) {

    case NGX_MAIL_PLUS_SASL_NEXT:
        return NGX_OK;

    case NGX_MAIL_PLUS_SASL_DONE:
        return NGX_DONE;

    case NGX_MAIL_PLUS_SASL_BAD:
        return ngx_mail_plus_pop3_error(s, "-ERR Invalid SASL response.");

    case NGX_MAIL_PLUS_SASL_AUTHZID:
        ngx_str_set(&s->out, "-ERR [AUTH] Authorization identity "
                             "not allowed." CRLF);
        return NGX_OK;

    case NGX_MAIL_PLUS_SASL_UNSUPPORTED:
        ngx_str_set(&s->out, "-ERR authentication method not supported"
                             CRLF);
        return NGX_OK;

    case NGX_MAIL_PLUS_SASL_CANCEL:
        ngx_str_set(&s->out, "-ERR Authentication cancelled." CRLF);
        return NGX_OK;

    case NGX_MAIL_PLUS_SASL_SYNTAX:
        return ngx_mail_plus_pop3_error(s, "-ERR invalid command");

    case NGX_MAIL_PLUS_SASL_FAILED:
        return ngx_mail_plus_proxy_say(s, NULL, 0,
                       &ngx_mail_plus_proxy_texts[NGX_MAIL_PLUS_POP3].failed,
                       NULL);

    default:
        return NGX_ERROR;
    }
}


/* an invalid command: counted, and at max_errors the session ends */

static ngx_int_t
ngx_mail_plus_pop3_error(ngx_mail_session_t *s, char *text)
{
    ngx_str_t                   t;
    ngx_mail_core_srv_conf_t   *cscf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    s->errors++;

    if (s->errors >= cscf->max_errors) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "client sent too many invalid commands");

        ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
        ctx->end = NGX_MAIL_PLUS_END_ERROR;

        ngx_str_set(&t, "-ERR Too many invalid commands.");
        s->quit = 1;

    } else {
        t.data = (u_char *) text;
        t.len = ngx_strlen(text);
    }

    return ngx_mail_plus_proxy_say(s, NULL, 0, &t, NULL);
}
