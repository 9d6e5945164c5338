
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The IMAP dialogue before login, in a "router_proxy on" server: the
 * module's reader (tags, quoted strings, literals with a bound, LITERAL+)
 * and SASL decoding, the stock imap_* settings, the router instead of
 * auth_http.  ID is answered here (RFC 2971); the client's fields are
 * read and forgotten.
 *
 * A literal over router_proxy_literal_size is refused with BAD before any
 * "+" is sent; a non-synchronizing one is refused and the session closed,
 * as its bytes are on their way.  Invalid commands count against
 * max_errors; at the limit the session says BYE and is closed.
 */


static void ngx_mail_plus_imap_init_session(ngx_mail_session_t *s,
    ngx_connection_t *c);
static void ngx_mail_plus_imap_init_protocol(ngx_event_t *rev);
static void ngx_mail_plus_imap_auth_state(ngx_event_t *rev);
static ngx_int_t ngx_mail_plus_imap_command(ngx_mail_session_t *s,
    ngx_connection_t *c, ngx_mail_plus_proxy_ctx_t *ctx, ngx_int_t rc);
static ngx_int_t ngx_mail_plus_imap_sasl(ngx_mail_session_t *s,
    ngx_int_t rc);
static ngx_int_t ngx_mail_plus_imap_error(ngx_mail_session_t *s,
    char *text);


static ngx_str_t  imap_greeting = ngx_string("* OK IMAP4 ready" CRLF);
static ngx_str_t  imap_limit =
    ngx_string("* BYE [UNAVAILABLE] Too many sessions." CRLF);
static ngx_str_t  imap_bye = ngx_string("* BYE" CRLF);
static ngx_str_t  imap_id = ngx_string("* ID NIL" CRLF);


/*
 * the protocol a "router_proxy on" server switches to; never registered by
 * name, so that "protocol imap" keeps meaning the stock one
 */

ngx_mail_protocol_t  ngx_mail_plus_imap_protocol = {
    ngx_string("imap"),
    ngx_string("\x04imap"),
    { 143, 993, 0, 0 },
    NGX_MAIL_IMAP_PROTOCOL,

    ngx_mail_plus_imap_init_session,
    ngx_mail_plus_imap_init_protocol,
    ngx_mail_plus_proxy_parse_command,
    ngx_mail_plus_imap_auth_state,

    ngx_string("* BAD internal server error" CRLF),
    ngx_string("* BYE SSL certificate error" CRLF),
    ngx_string("* BYE No required SSL certificate" CRLF)
};


static void
ngx_mail_plus_imap_init_session(ngx_mail_session_t *s, ngx_connection_t *c)
{
    ngx_mail_plus_proxy_init_session(s, c, NGX_MAIL_PLUS_IMAP,
                                     &imap_greeting, &imap_limit,
                                     ngx_mail_plus_imap_init_protocol);
}


static void
ngx_mail_plus_imap_init_protocol(ngx_event_t *rev)
{
    ngx_connection_t  *c;

    c = rev->data;

    if (ngx_mail_plus_proxy_init_protocol(rev) != NGX_OK) {
        return;
    }

    c->read->handler = ngx_mail_plus_imap_auth_state;

    ngx_mail_plus_imap_auth_state(rev);
}


static void
ngx_mail_plus_imap_auth_state(ngx_event_t *rev)
{
    ngx_mail_plus_proxy_dialogue(rev, ngx_mail_plus_imap_command,
                                 ngx_mail_plus_imap_auth_state);
}


/* NGX_OK: s->out is the reply; NGX_DONE: ask the router; NGX_ERROR */

static ngx_int_t
ngx_mail_plus_imap_command(ngx_mail_session_t *s, ngx_connection_t *c,
    ngx_mail_plus_proxy_ctx_t *ctx, ngx_int_t rc)
{
    ngx_str_t                 *untagged, text;
    ngx_mail_plus_parse_t     *p;
    ngx_mail_imap_srv_conf_t  *iscf;

    p = &ctx->parse;

    s->out.len = 0;

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_MAIL_PLUS_PARSE_LITERAL:
        ngx_str_set(&s->out, "+ OK" CRLF);
        return NGX_OK;

    case NGX_MAIL_PLUS_PARSE_TOO_LONG:
        ngx_str_set(&s->out, "* BYE Command too long." CRLF);
        s->quit = 1;
        ctx->end = NGX_MAIL_PLUS_END_ERROR;
        return NGX_OK;

    case NGX_MAIL_PLUS_PARSE_CLOSE:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "client sent a non-synchronizing literal "
                      "over the limit");

        ngx_str_set(&text, "BAD Literal too large.");
        s->quit = 1;
        ctx->end = NGX_MAIL_PLUS_END_ERROR;
        return ngx_mail_plus_proxy_say(s, NULL, 1, &text, NULL);

    default: /* NGX_MAIL_PLUS_PARSE_INVALID */
        s->mail_state = NGX_MAIL_PLUS_STATE_COMMAND;

        if (p->error == NGX_MAIL_PLUS_PARSE_BIG) {
            return ngx_mail_plus_imap_error(s, "BAD Literal too large.");
        }

        return ngx_mail_plus_imap_error(s, "BAD invalid command");
    }

    if (s->mail_state >= NGX_MAIL_PLUS_STATE_PLAIN) {
        return ngx_mail_plus_imap_sasl(s, ngx_mail_plus_proxy_sasl_step(s, c));
    }

    iscf = ngx_mail_get_module_srv_conf(s, ngx_mail_imap_module);

    ngx_log_debug2(NGX_LOG_DEBUG_MAIL, c->log, 0,
                   "proxy: imap command %ui, %ui arguments",
                   p->command, p->nargs);

    untagged = NULL;
    ngx_str_set(&text, "OK completed");

    switch (p->command) {

    case NGX_MAIL_PLUS_CMD_LOGIN:

#if (NGX_MAIL_SSL)
        if (ngx_mail_starttls_only(s, c)) {
            break;
        }
#endif

        if (p->nargs != 2 || p->args[0].len == 0) {
            break;
        }

        if (ngx_mail_plus_proxy_set_login(s, &p->args[0]) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the router copies it; the buffer is not read before that */

        s->passwd = p->args[1];
        return NGX_DONE;

    case NGX_MAIL_PLUS_CMD_AUTH:

#if (NGX_MAIL_SSL)
        if (ngx_mail_starttls_only(s, c)) {
            break;
        }
#endif

        return ngx_mail_plus_imap_sasl(s,
                   ngx_mail_plus_proxy_sasl_start(s, c, iscf->auth_methods));

    case NGX_MAIL_PLUS_CMD_CAPA:
        if (p->nargs) {
            break;
        }

        untagged = ngx_mail_plus_proxy_capability(s, c, &iscf->capability,
                                             &iscf->starttls_capability,
                                             &iscf->starttls_only_capability);
        untagged = ngx_mail_plus_proxy_token_capability(s, untagged);
        return ngx_mail_plus_proxy_say(s, untagged, 1, &text, NULL);

    case NGX_MAIL_PLUS_CMD_QUIT:
        s->quit = 1;
        return ngx_mail_plus_proxy_say(s, &imap_bye, 1, &text, NULL);

    case NGX_MAIL_PLUS_CMD_NOOP:
        return ngx_mail_plus_proxy_say(s, NULL, 1, &text, NULL);

    case NGX_MAIL_PLUS_CMD_STARTTLS:
        if (ngx_mail_plus_proxy_starttls(s, c) == NGX_OK) {
            return ngx_mail_plus_proxy_say(s, NULL, 1, &text, NULL);
        }

        break;

    case NGX_MAIL_PLUS_CMD_ID:

        /* a list or NIL; the fields are not kept */

        if (p->nargs != 1) {
            break;
        }

        return ngx_mail_plus_proxy_say(s, &imap_id, 1, &text, NULL);
    }

    return ngx_mail_plus_imap_error(s, "BAD invalid command");
}


static ngx_int_t
ngx_mail_plus_imap_sasl(ngx_mail_session_t *s, ngx_int_t rc)
{
    ngx_str_t  text;

    switch (rc) {

    case NGX_MAIL_PLUS_SASL_NEXT:
        return NGX_OK;

    case NGX_MAIL_PLUS_SASL_DONE:
        return NGX_DONE;

    case NGX_MAIL_PLUS_SASL_BAD:

        /* RFC 3501: a response that is not base64 gets BAD */

        return ngx_mail_plus_imap_error(s, "BAD Invalid SASL response.");

    case NGX_MAIL_PLUS_SASL_AUTHZID:
        ngx_str_set(&text, "NO [AUTHORIZATIONFAILED] Authorization "
                           "identity not allowed.");
        break;

    case NGX_MAIL_PLUS_SASL_UNSUPPORTED:
        ngx_str_set(&text, "NO authentication mechanism not supported");
        break;

    case NGX_MAIL_PLUS_SASL_CANCEL:
        ngx_str_set(&text, "BAD Authentication cancelled.");
        break;

    case NGX_MAIL_PLUS_SASL_SYNTAX:
        return ngx_mail_plus_imap_error(s, "BAD invalid command");

    case NGX_MAIL_PLUS_SASL_FAILED:
        text = ngx_mail_plus_proxy_texts[NGX_MAIL_PLUS_IMAP].failed;
        break;

    default:
        return NGX_ERROR;
    }

    return ngx_mail_plus_proxy_say(s, NULL, 1, &text, NULL);
}


/* an invalid command: counted, and at max_errors the session ends */

static ngx_int_t
ngx_mail_plus_imap_error(ngx_mail_session_t *s, char *text)
{
    ngx_str_t                   t, bye, *tail;
    ngx_mail_core_srv_conf_t   *cscf;
    ngx_mail_plus_proxy_ctx_t  *ctx;

    cscf = ngx_mail_get_module_srv_conf(s, ngx_mail_core_module);

    t.data = (u_char *) text;
    t.len = ngx_strlen(text);
    tail = NULL;

    s->errors++;

    if (s->errors >= cscf->max_errors) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "client sent too many invalid commands");

        ctx = ngx_mail_get_module_ctx(s, ngx_mail_plus_proxy_module);
        ctx->end = NGX_MAIL_PLUS_END_ERROR;

        ngx_str_set(&bye, "* BYE Too many invalid commands." CRLF);
        tail = &bye;
        s->quit = 1;
    }

    return ngx_mail_plus_proxy_say(s, NULL, 1, &t, tail);
}
