
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"


/*
 * The reader of POP3 and IMAP commands before login, in "router_proxy"
 * servers.  A pure state machine over the session's command buffer: it
 * neither allocates nor logs, so that the fuzz targets link this file
 * alone.  The caller feeds the buffer as bytes arrive; a command's parts
 * (tag, name, arguments) are left in the buffer where they were read, so
 * the caller must not move the buffer while a command is under way.
 *
 * A line ends with LF; a CR is allowed only right before it.
 *
 * IMAP: a tag, a space, a command name, arguments: atoms, quoted strings
 * (unquoted in place: the value is never longer than its text), literals
 * and one level of parenthesized list (ID).  A literal's announced size
 * is read with a bound: digits past the bound are counted, never
 * multiplied, so no number can overflow.  A synchronizing literal over
 * the bound, or over what is left of the buffer, is refused when its line
 * ends, before any continuation is sent; a non-synchronizing one ({n+})
 * is refused as soon as its "}" is read: its bytes follow anyway, so the
 * caller must close the connection.
 *
 * POP3: a command name of letters, arguments separated by spaces; every
 * byte but SP, CR and LF belongs to an argument, and "rest" keeps the
 * whole text after the command name (PASS takes its password from it).
 *
 * A SASL response ("raw") is the whole line.
 */


enum {
    sw_start = 0,
    sw_tag,
    sw_name_start,
    sw_name,
    sw_arg_start,
    sw_atom,
    sw_quoted,
    sw_quoted_escape,
    sw_literal_size,
    sw_literal_plus,
    sw_literal_cr,
    sw_literal_lf,
    sw_literal,
    sw_arg_end,
    sw_almost_done,
    sw_skip,
    sw_pop3_name,
    sw_pop3_arg_start,
    sw_pop3_arg,
    sw_raw
};


typedef struct {
    ngx_str_t                   name;
    ngx_uint_t                  command;
} ngx_mail_plus_parse_verb_t;


static ngx_int_t ngx_mail_plus_parse_imap(ngx_mail_plus_parse_t *p,
    ngx_buf_t *b);
static ngx_int_t ngx_mail_plus_parse_pop3(ngx_mail_plus_parse_t *p,
    ngx_buf_t *b);
static ngx_int_t ngx_mail_plus_parse_raw(ngx_mail_plus_parse_t *p,
    ngx_buf_t *b);
static void ngx_mail_plus_parse_begin(ngx_mail_plus_parse_t *p,
    u_char *start);
static void ngx_mail_plus_parse_arg(ngx_mail_plus_parse_t *p, u_char *data,
    size_t len);
static ngx_uint_t ngx_mail_plus_parse_command(ngx_mail_plus_parse_verb_t *v,
    u_char *name, size_t len);


static ngx_mail_plus_parse_verb_t  ngx_mail_plus_imap_verbs[] = {
    { ngx_string("CAPABILITY"), NGX_MAIL_PLUS_CMD_CAPA },
    { ngx_string("NOOP"), NGX_MAIL_PLUS_CMD_NOOP },
    { ngx_string("LOGOUT"), NGX_MAIL_PLUS_CMD_QUIT },
    { ngx_string("STARTTLS"), NGX_MAIL_PLUS_CMD_STARTTLS },
    { ngx_string("AUTHENTICATE"), NGX_MAIL_PLUS_CMD_AUTH },
    { ngx_string("LOGIN"), NGX_MAIL_PLUS_CMD_LOGIN },
    { ngx_string("ID"), NGX_MAIL_PLUS_CMD_ID },
    { ngx_null_string, 0 }
};


static ngx_mail_plus_parse_verb_t  ngx_mail_plus_pop3_verbs[] = {
    { ngx_string("CAPA"), NGX_MAIL_PLUS_CMD_CAPA },
    { ngx_string("NOOP"), NGX_MAIL_PLUS_CMD_NOOP },
    { ngx_string("QUIT"), NGX_MAIL_PLUS_CMD_QUIT },
    { ngx_string("STLS"), NGX_MAIL_PLUS_CMD_STARTTLS },
    { ngx_string("AUTH"), NGX_MAIL_PLUS_CMD_AUTH },
    { ngx_string("USER"), NGX_MAIL_PLUS_CMD_USER },
    { ngx_string("PASS"), NGX_MAIL_PLUS_CMD_PASS },
    { ngx_string("APOP"), NGX_MAIL_PLUS_CMD_APOP },
    { ngx_null_string, 0 }
};


/* a tag: ASTRING-CHAR but "+" (RFC 3501) */

static ngx_inline ngx_uint_t
ngx_mail_plus_parse_tag_char(u_char ch)
{
    if (ch <= 0x20 || ch >= 0x7f) {
        return 0;
    }

    switch (ch) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\':
    case '+':
        return 0;
    }

    return 1;
}


/* an atom: leniently, any byte but SP, CTL and the IMAP delimiters */

static ngx_inline ngx_uint_t
ngx_mail_plus_parse_atom_char(u_char ch)
{
    if (ch <= 0x20 || ch == 0x7f) {
        return 0;
    }

    switch (ch) {
    case '(': case ')': case '{': case '"':
        return 0;
    }

    return 1;
}


void
ngx_mail_plus_parse_init(ngx_mail_plus_parse_t *p, ngx_uint_t protocol,
    size_t literal_max)
{
    ngx_memzero(p, sizeof(ngx_mail_plus_parse_t));

    p->protocol = protocol;
    p->literal_max = literal_max;
}


/*
 * NGX_OK: a command (or a raw line) ends at b->pos; NGX_AGAIN: every byte
 * up to b->last is taken, more are needed; NGX_MAIL_PLUS_PARSE_LITERAL: a
 * synchronizing literal is accepted, the client waits for "+";
 * NGX_MAIL_PLUS_PARSE_INVALID: a bad line ends at b->pos (p->error says
 * why); NGX_MAIL_PLUS_PARSE_CLOSE: a non-synchronizing literal over the
 * bound, the session cannot go on
 */

ngx_int_t
ngx_mail_plus_parse(ngx_mail_plus_parse_t *p, ngx_buf_t *b)
{
    if (p->raw) {
        return ngx_mail_plus_parse_raw(p, b);
    }

    if (p->protocol == NGX_MAIL_PLUS_IMAP) {
        return ngx_mail_plus_parse_imap(p, b);
    }

    return ngx_mail_plus_parse_pop3(p, b);
}


/* no command under way: the buffer may be moved */

ngx_uint_t
ngx_mail_plus_parse_idle(ngx_mail_plus_parse_t *p)
{
    return p->state == sw_start;
}


static ngx_int_t
ngx_mail_plus_parse_imap(ngx_mail_plus_parse_t *p, ngx_buf_t *b)
{
    u_char   ch, *pos, *last;
    size_t   n;

    pos = b->pos;
    last = b->last;

    while (pos < last) {

        ch = *pos++;

        switch (p->state) {

        case sw_start:
            ngx_mail_plus_parse_begin(p, pos - 1);

            if (!ngx_mail_plus_parse_tag_char(ch)) {
                goto invalid;
            }

            p->tag.data = pos - 1;
            p->state = sw_tag;
            break;

        case sw_tag:
            if (ch == ' ') {

                /* the tag keeps its space, as the replies use it */

                p->tag.len = pos - p->tag.data;
                p->state = sw_name_start;
                break;
            }

            if (!ngx_mail_plus_parse_tag_char(ch)) {
                goto invalid;
            }

            break;

        case sw_name_start:
            if (!ngx_mail_plus_parse_atom_char(ch)) {
                goto invalid;
            }

            p->name.data = pos - 1;
            p->state = sw_name;
            break;

        case sw_name:
            if (ngx_mail_plus_parse_atom_char(ch)) {
                break;
            }

            p->name.len = pos - 1 - p->name.data;
            p->command = ngx_mail_plus_parse_command(ngx_mail_plus_imap_verbs,
                                                     p->name.data,
                                                     p->name.len);
            switch (ch) {
            case ' ':
                p->state = sw_arg_start;
                break;
            case CR:
                p->state = sw_almost_done;
                break;
            case LF:
                goto done;
            default:
                goto invalid;
            }

            break;

        case sw_arg_start:
            switch (ch) {

            case ' ':
                break;

            case CR:
                if (p->depth) {
                    goto invalid;
                }

                p->state = sw_almost_done;
                break;

            case LF:
                if (p->depth) {
                    goto invalid;
                }

                goto done;

            case '"':
                p->arg = pos;
                p->dst = pos;
                p->state = sw_quoted;
                break;

            case '{':
                p->literal = 0;
                p->digits = 0;
                p->plus = 0;
                p->state = sw_literal_size;
                break;

            case '(':
                if (p->depth) {
                    goto invalid;
                }

                p->depth = 1;
                p->list = pos - 1;
                break;

            case ')':
                if (p->depth == 0) {
                    goto invalid;
                }

                p->depth = 0;
                ngx_mail_plus_parse_arg(p, p->list, pos - p->list);
                p->state = sw_arg_end;
                break;

            default:
                if (!ngx_mail_plus_parse_atom_char(ch)) {
                    goto invalid;
                }

                p->arg = pos - 1;
                p->state = sw_atom;
                break;
            }

            break;

        case sw_atom:
            if (ngx_mail_plus_parse_atom_char(ch)) {
                break;
            }

            ngx_mail_plus_parse_arg(p, p->arg, pos - 1 - p->arg);

            switch (ch) {

            case ' ':
                p->state = sw_arg_start;
                break;

            case ')':
                if (p->depth == 0) {
                    goto invalid;
                }

                p->depth = 0;
                ngx_mail_plus_parse_arg(p, p->list, pos - p->list);
                p->state = sw_arg_end;
                break;

            case CR:
                if (p->depth) {
                    goto invalid;
                }

                p->state = sw_almost_done;
                break;

            case LF:
                if (p->depth) {
                    goto invalid;
                }

                goto done;

            default:
                goto invalid;
            }

            break;

        case sw_quoted:
            switch (ch) {

            case '"':
                ngx_mail_plus_parse_arg(p, p->arg, p->dst - p->arg);
                p->state = sw_arg_end;
                break;

            case '\\':
                p->state = sw_quoted_escape;
                break;

            case CR:
            case LF:
            case '\0':
                goto invalid;

            default:
                *p->dst++ = ch;
                break;
            }

            break;

        case sw_quoted_escape:
            if (ch != '"' && ch != '\\') {
                goto invalid;
            }

            *p->dst++ = ch;
            p->state = sw_quoted;
            break;

        case sw_literal_size:
            if (ch >= '0' && ch <= '9') {

                /* past the bound the number is not computed any more */

                if (p->literal <= p->literal_max) {
                    p->literal = p->literal * 10 + (ch - '0');
                }

                p->digits = 1;
                break;
            }

            if (!p->digits) {
                goto invalid;
            }

            if (ch == '+') {
                p->plus = 1;
                p->state = sw_literal_plus;
                break;
            }

            if (ch == '}') {
                p->state = sw_literal_cr;
                break;
            }

            goto invalid;

        case sw_literal_plus:
            if (ch != '}') {
                goto invalid;
            }

            if (p->literal > p->literal_max) {
                p->error = NGX_MAIL_PLUS_PARSE_BIG;
                p->state = sw_start;
                b->pos = pos;
                return NGX_MAIL_PLUS_PARSE_CLOSE;
            }

            p->state = sw_literal_cr;
            break;

        case sw_literal_cr:
            if (ch == CR) {
                p->state = sw_literal_lf;
                break;
            }

            if (ch != LF) {
                goto invalid;
            }

            /* fall through */

        case sw_literal_lf:
            if (ch != LF) {
                goto invalid;
            }

            /* the literal must fit in what is left of the buffer */

            if (p->literal > p->literal_max
                || p->literal > (size_t) (b->end - pos))
            {
                p->error = NGX_MAIL_PLUS_PARSE_BIG;
                p->state = sw_start;
                b->pos = pos;

                return p->plus ? NGX_MAIL_PLUS_PARSE_CLOSE
                               : NGX_MAIL_PLUS_PARSE_INVALID;
            }

            p->arg = pos;

            if (p->literal == 0) {
                ngx_mail_plus_parse_arg(p, pos, 0);
                p->state = sw_arg_end;

            } else {
                p->state = sw_literal;
            }

            if (!p->plus) {
                b->pos = pos;
                return NGX_MAIL_PLUS_PARSE_LITERAL;
            }

            break;

        case sw_literal:

            /* any byte: the literal's bytes are taken as they are */

            pos--;
            n = ngx_min(p->literal, (size_t) (last - pos));
            pos += n;
            p->literal -= n;

            if (p->literal == 0) {
                ngx_mail_plus_parse_arg(p, p->arg, pos - p->arg);
                p->state = sw_arg_end;
            }

            break;

        case sw_arg_end:
            switch (ch) {

            case ' ':
                p->state = sw_arg_start;
                break;

            case ')':
                if (p->depth == 0) {
                    goto invalid;
                }

                p->depth = 0;
                ngx_mail_plus_parse_arg(p, p->list, pos - p->list);
                break;

            case CR:
                if (p->depth) {
                    goto invalid;
                }

                p->state = sw_almost_done;
                break;

            case LF:
                if (p->depth) {
                    goto invalid;
                }

                goto done;

            default:
                goto invalid;
            }

            break;

        case sw_almost_done:
            if (ch != LF) {
                goto invalid;
            }

            goto done;

        case sw_skip:
            if (ch == LF) {
                p->state = sw_start;
                b->pos = pos;
                return NGX_MAIL_PLUS_PARSE_INVALID;
            }

            break;

        default:
            goto invalid;
        }

        continue;

    invalid:

        if (p->error == 0) {
            p->error = NGX_MAIL_PLUS_PARSE_SYNTAX;
        }

        if (ch == LF) {
            p->state = sw_start;
            b->pos = pos;
            return NGX_MAIL_PLUS_PARSE_INVALID;
        }

        p->state = sw_skip;
        continue;

    done:

        p->state = sw_start;
        b->pos = pos;
        return NGX_OK;
    }

    b->pos = pos;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_mail_plus_parse_pop3(ngx_mail_plus_parse_t *p, ngx_buf_t *b)
{
    u_char  ch, *pos, *last;

    pos = b->pos;
    last = b->last;

    while (pos < last) {

        ch = *pos++;

        switch (p->state) {

        case sw_start:
            ngx_mail_plus_parse_begin(p, pos - 1);

            if ((ch | 0x20) < 'a' || (ch | 0x20) > 'z') {
                goto invalid;
            }

            p->name.data = pos - 1;
            p->state = sw_pop3_name;
            break;

        case sw_pop3_name:
            if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') {
                break;
            }

            p->name.len = pos - 1 - p->name.data;
            p->command = ngx_mail_plus_parse_command(ngx_mail_plus_pop3_verbs,
                                                     p->name.data,
                                                     p->name.len);
            switch (ch) {

            case ' ':
                p->rest.data = pos;
                p->state = sw_pop3_arg_start;
                break;

            case CR:
                p->state = sw_almost_done;
                break;

            case LF:
                goto done;

            default:
                goto invalid;
            }

            break;

        case sw_pop3_arg_start:
            switch (ch) {

            case ' ':
                break;

            case CR:
                p->rest.len = pos - 1 - p->rest.data;
                p->state = sw_almost_done;
                break;

            case LF:
                p->rest.len = pos - 1 - p->rest.data;
                goto done;

            default:
                p->arg = pos - 1;
                p->state = sw_pop3_arg;
                break;
            }

            break;

        case sw_pop3_arg:
            switch (ch) {

            case ' ':
                ngx_mail_plus_parse_arg(p, p->arg, pos - 1 - p->arg);
                p->state = sw_pop3_arg_start;
                break;

            case CR:
                ngx_mail_plus_parse_arg(p, p->arg, pos - 1 - p->arg);
                p->rest.len = pos - 1 - p->rest.data;
                p->state = sw_almost_done;
                break;

            case LF:
                ngx_mail_plus_parse_arg(p, p->arg, pos - 1 - p->arg);
                p->rest.len = pos - 1 - p->rest.data;
                goto done;

            default:

                /* NUL and other control bytes too: the router refuses them */

                break;
            }

            break;

        case sw_almost_done:
            if (ch != LF) {
                goto invalid;
            }

            goto done;

        case sw_skip:
            if (ch == LF) {
                p->state = sw_start;
                b->pos = pos;
                return NGX_MAIL_PLUS_PARSE_INVALID;
            }

            break;

        default:
            goto invalid;
        }

        continue;

    invalid:

        p->error = NGX_MAIL_PLUS_PARSE_SYNTAX;

        if (ch == LF) {
            p->state = sw_start;
            b->pos = pos;
            return NGX_MAIL_PLUS_PARSE_INVALID;
        }

        p->state = sw_skip;
        continue;

    done:

        p->state = sw_start;
        b->pos = pos;
        return NGX_OK;
    }

    b->pos = pos;

    return NGX_AGAIN;
}


/* a SASL response: the line without its line ending, in args[0] */

static ngx_int_t
ngx_mail_plus_parse_raw(ngx_mail_plus_parse_t *p, ngx_buf_t *b)
{
    u_char  *pos, *lf;

    pos = b->pos;

    if (p->state == sw_start) {
        ngx_mail_plus_parse_begin(p, pos);
        p->arg = pos;
        p->state = sw_raw;
    }

    lf = ngx_strlchr(pos, b->last, LF);

    if (lf == NULL) {
        b->pos = b->last;
        return NGX_AGAIN;
    }

    b->pos = lf + 1;
    p->state = sw_start;

    if (lf > p->arg && lf[-1] == CR) {
        lf--;
    }

    ngx_mail_plus_parse_arg(p, p->arg, lf - p->arg);

    return NGX_OK;
}


static void
ngx_mail_plus_parse_begin(ngx_mail_plus_parse_t *p, u_char *start)
{
    p->start = start;
    p->command = NGX_MAIL_PLUS_CMD_UNKNOWN;
    p->error = 0;
    p->nargs = 0;
    p->depth = 0;
    p->literal = 0;
    p->plus = 0;
    p->tag.len = 0;
    p->tag.data = NULL;
    p->name.len = 0;
    p->name.data = start;
    p->rest.len = 0;
    p->rest.data = NULL;
}


/* arguments inside a list are not kept; past the first few, counted */

static void
ngx_mail_plus_parse_arg(ngx_mail_plus_parse_t *p, u_char *data, size_t len)
{
    if (p->depth) {
        return;
    }

    if (p->nargs < NGX_MAIL_PLUS_PARSE_ARGS) {
        p->args[p->nargs].data = data;
        p->args[p->nargs].len = len;
    }

    p->nargs++;
}


static ngx_uint_t
ngx_mail_plus_parse_command(ngx_mail_plus_parse_verb_t *v, u_char *name,
    size_t len)
{
    for ( /* void */ ; v->name.len; v++) {
        if (v->name.len == len
            && ngx_strncasecmp(v->name.data, name, len) == 0)
        {
            return v->command;
        }
    }

    return NGX_MAIL_PLUS_CMD_UNKNOWN;
}
