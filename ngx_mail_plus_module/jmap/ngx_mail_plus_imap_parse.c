
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * The reader of an IMAP server's responses: a state machine fed byte by
 * byte (literal bodies by whole chunks), which copies every token it
 * keeps, so that a response may be split anywhere between buffers.  The
 * grammar and the limits are described in ngx_mail_plus_imap_parse.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_imap_parse.h"


#define NGX_MAIL_PLUS_IMAP_TAG     0     /* the token is a tag */
#define NGX_MAIL_PLUS_IMAP_STATUS  1     /* a tagged response's status */
#define NGX_MAIL_PLUS_IMAP_FIRST   2     /* "*": a number, status or name */
#define NGX_MAIL_PLUS_IMAP_NAME    3     /* "* n": the data name */
#define NGX_MAIL_PLUS_IMAP_CODE    4     /* values: a response code */
#define NGX_MAIL_PLUS_IMAP_VALUES  5     /* values: a data's */


enum {
    sw_start = 0,
    sw_tag,
    sw_star,
    sw_plus,
    sw_word,
    sw_name_sp,
    sw_text_start,
    sw_text,
    sw_code_end,
    sw_almost_done,

    /* values */
    sw_value,
    sw_atom,
    sw_atom_bracket,
    sw_quoted,
    sw_quoted_escape,
    sw_tilde,

    /* literals */
    sw_literal_size,
    sw_literal_plus,
    sw_literal_cr,
    sw_literal_lf,
    sw_literal_body,

    sw_failed
};


static ngx_int_t ngx_mail_plus_imap_head(ngx_mail_plus_imap_parser_t *p,
    u_char ch);
static ngx_int_t ngx_mail_plus_imap_word(ngx_mail_plus_imap_parser_t *p,
    u_char ch);
static ngx_int_t ngx_mail_plus_imap_values(ngx_mail_plus_imap_parser_t *p,
    u_char ch);
static ngx_int_t ngx_mail_plus_imap_delimiter(ngx_mail_plus_imap_parser_t *p,
    u_char ch);
static ngx_int_t ngx_mail_plus_imap_literal(ngx_mail_plus_imap_parser_t *p,
    u_char ch);
static ngx_int_t ngx_mail_plus_imap_atom_end(ngx_mail_plus_imap_parser_t *p);
static ngx_int_t ngx_mail_plus_imap_open(ngx_mail_plus_imap_parser_t *p);
static ngx_int_t ngx_mail_plus_imap_close(ngx_mail_plus_imap_parser_t *p);
static ngx_mail_plus_imap_value_t *ngx_mail_plus_imap_add(
    ngx_mail_plus_imap_parser_t *p, ngx_mail_plus_imap_type_e type);
static ngx_int_t ngx_mail_plus_imap_append(ngx_mail_plus_imap_parser_t *p,
    u_char ch);
static ngx_int_t ngx_mail_plus_imap_copy(ngx_mail_plus_imap_parser_t *p,
    ngx_str_t *dst);
static ngx_int_t ngx_mail_plus_imap_digits(u_char *s, size_t len,
    uint64_t *n);
static ngx_uint_t ngx_mail_plus_imap_atom_char(u_char ch);
static ngx_int_t ngx_mail_plus_imap_fail(ngx_mail_plus_imap_parser_t *p,
    const char *error);


static ngx_str_t  ngx_mail_plus_imap_statuses[] = {
    ngx_null_string,
    ngx_string("OK"),
    ngx_string("NO"),
    ngx_string("BAD"),
    ngx_string("PREAUTH"),
    ngx_string("BYE")
};


ngx_int_t
ngx_mail_plus_imap_parser_init(ngx_mail_plus_imap_parser_t *p,
    ngx_mail_plus_imap_limits_t *limits, ngx_pool_t *pool)
{
    ngx_memzero(p, sizeof(ngx_mail_plus_imap_parser_t));

    if (limits->line == 0 || limits->total == 0
        || limits->literal > NGX_MAX_SIZE_T_VALUE / 10)
    {
        return NGX_ERROR;
    }

    p->limits = *limits;
    p->pool = pool;
    p->log = pool->log;

    p->token = ngx_pnalloc(pool, limits->line);
    if (p->token == NULL) {
        return NGX_ERROR;
    }

    p->state = sw_start;

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_imap_parse(ngx_mail_plus_imap_parser_t *p, ngx_buf_t *b)
{
    u_char                      *pos, *last;
    size_t                       n;
    ngx_int_t                    rc;
    ngx_mail_plus_imap_value_t  *v;

    if (p->state == sw_failed) {
        return NGX_ERROR;
    }

    last = b->last;

    for (pos = b->pos; pos < last; /* void */) {

        if (p->state == sw_literal_body) {
            v = p->literal;

            n = ngx_min(p->literal_len - v->str.len, (size_t) (last - pos));
            ngx_memcpy(v->str.data + v->str.len, pos, n);

            v->str.len += n;
            p->total += n;
            pos += n;

            if (v->str.len == p->literal_len) {
                p->literal = NULL;
                p->state = sw_value;
            }

            continue;
        }

        if (++p->total > p->limits.total) {
            rc = ngx_mail_plus_imap_fail(p, "response too large");

        } else if (++p->line_len > p->limits.line) {
            rc = ngx_mail_plus_imap_fail(p, "line too long");

        } else {
            do {
                if (p->state < sw_value) {
                    rc = ngx_mail_plus_imap_head(p, *pos);

                } else if (p->state < sw_literal_size) {
                    rc = ngx_mail_plus_imap_values(p, *pos);

                } else {
                    rc = ngx_mail_plus_imap_literal(p, *pos);
                }

            } while (rc == NGX_DECLINED);
        }

        if (rc == NGX_ERROR) {
            b->pos = pos;

            if (p->log) {
                ngx_log_debug1(NGX_LOG_DEBUG_MAIL, p->log, 0,
                               "imap parse: error: %s", p->error);
            }

            return NGX_ERROR;
        }

        pos++;

        if (rc == NGX_OK) {
            b->pos = pos;

            p->response->size = p->total;
            p->total = 0;
            p->line_len = 0;
            p->state = sw_start;

            if (p->log) {
                ngx_log_debug4(NGX_LOG_DEBUG_MAIL, p->log, 0,
                               "imap parse: response kind:%ui status:%ui "
                               "\"%V\" size:%uz", p->response->kind,
                               p->response->status, &p->response->name,
                               p->response->size);
            }

            return NGX_OK;
        }
    }

    b->pos = pos;

    return NGX_AGAIN;
}


/* the tag, the status or data name, the free text, the final CRLF */

static ngx_int_t
ngx_mail_plus_imap_head(ngx_mail_plus_imap_parser_t *p, u_char ch)
{
    ngx_mail_plus_imap_response_t  *r;

    r = p->response;

    switch (p->state) {

    case sw_start:
        r = ngx_pcalloc(p->pool, sizeof(ngx_mail_plus_imap_response_t));
        if (r == NULL) {
            return ngx_mail_plus_imap_fail(p, "out of memory");
        }

        p->response = r;
        p->token_len = 0;
        p->depth = 0;
        p->list = NULL;

        if (ch == '*') {
            r->kind = NGX_MAIL_PLUS_IMAP_UNTAGGED;
            p->state = sw_star;
            break;
        }

        if (ch == '+') {
            r->kind = NGX_MAIL_PLUS_IMAP_CONTINUATION;
            p->state = sw_plus;
            break;
        }

        r->kind = NGX_MAIL_PLUS_IMAP_TAGGED;
        p->state = sw_tag;

        return NGX_DECLINED;

    case sw_tag:
        if (ch == ' ' && p->token_len) {
            if (ngx_mail_plus_imap_copy(p, &r->tag) != NGX_OK) {
                return NGX_ERROR;
            }

            p->next = NGX_MAIL_PLUS_IMAP_STATUS;
            p->state = sw_word;
            break;
        }

        if (ch == '+' || ch == '[' || !ngx_mail_plus_imap_atom_char(ch)) {
            return ngx_mail_plus_imap_fail(p, "bad tag");
        }

        return ngx_mail_plus_imap_append(p, ch);

    case sw_star:
        if (ch != ' ') {
            return ngx_mail_plus_imap_fail(p, "no space after \"*\"");
        }

        p->next = NGX_MAIL_PLUS_IMAP_FIRST;
        p->state = sw_word;
        break;

    case sw_plus:
        if (ch == ' ') {
            p->state = sw_text_start;
            break;
        }

        p->state = sw_text_start;

        return NGX_DECLINED;

    case sw_word:
        return ngx_mail_plus_imap_word(p, ch);

    case sw_name_sp:
        p->next = NGX_MAIL_PLUS_IMAP_VALUES;
        p->state = sw_value;

        if (ch == ' ') {
            break;
        }

        return NGX_DECLINED;

    case sw_text_start:
        if (ch == '[') {
            p->list = ngx_pcalloc(p->pool, sizeof(ngx_mail_plus_imap_value_t));
            if (p->list == NULL) {
                return ngx_mail_plus_imap_fail(p, "out of memory");
            }

            p->list->type = NGX_MAIL_PLUS_IMAP_LIST;
            r->code = p->list;

            p->next = NGX_MAIL_PLUS_IMAP_CODE;
            p->state = sw_value;
            break;
        }

        p->state = sw_text;

        return NGX_DECLINED;

    case sw_code_end:
        p->state = sw_text;

        if (ch == ' ') {
            break;
        }

        return NGX_DECLINED;

    case sw_text:
        if (ch == CR) {
            if (ngx_mail_plus_imap_copy(p, &r->text) != NGX_OK) {
                return NGX_ERROR;
            }

            p->state = sw_almost_done;
            break;
        }

        if (ch == LF || ch == '\0') {
            return ngx_mail_plus_imap_fail(p, "bad byte in text");
        }

        return ngx_mail_plus_imap_append(p, ch);

    default: /* sw_almost_done */
        if (ch != LF) {
            return ngx_mail_plus_imap_fail(p, "CR without LF");
        }

        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* the word after the tag: a status, a number or a data name */

static ngx_int_t
ngx_mail_plus_imap_word(ngx_mail_plus_imap_parser_t *p, u_char ch)
{
    uint64_t                        n;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_mail_plus_imap_response_t  *r;

    if (ch != ' ' && ch != CR) {
        if (!ngx_mail_plus_imap_atom_char(ch) || ch == '[') {
            return ngx_mail_plus_imap_fail(p, "bad byte in a response's name");
        }

        return ngx_mail_plus_imap_append(p, ch);
    }

    if (p->token_len == 0) {
        return ngx_mail_plus_imap_fail(p, "no response name");
    }

    r = p->response;

    rc = ngx_mail_plus_imap_digits(p->token, p->token_len, &n);

    if (p->next == NGX_MAIL_PLUS_IMAP_FIRST && rc != NGX_DECLINED) {
        if (rc == NGX_ERROR) {
            return ngx_mail_plus_imap_fail(p, "number too large");
        }

        if (ch != ' ') {
            return ngx_mail_plus_imap_fail(p, "no data name after a number");
        }

        r->number = n;
        r->has_number = 1;
        p->token_len = 0;
        p->next = NGX_MAIL_PLUS_IMAP_NAME;

        return NGX_AGAIN;
    }

    if (p->next != NGX_MAIL_PLUS_IMAP_NAME) {

        for (i = 1; i < 6; i++) {
            if (p->token_len == ngx_mail_plus_imap_statuses[i].len
                && ngx_strncasecmp(p->token,
                                   ngx_mail_plus_imap_statuses[i].data,
                                   p->token_len)
                   == 0)
            {
                break;
            }
        }

        if (p->next == NGX_MAIL_PLUS_IMAP_STATUS && i > 3) {
            return ngx_mail_plus_imap_fail(p, "bad status");
        }

        if (i < 6) {
            r->status = i;
            p->token_len = 0;
            p->state = (ch == CR) ? sw_almost_done : sw_text_start;

            return NGX_AGAIN;
        }
    }

    if (ngx_mail_plus_imap_copy(p, &r->name) != NGX_OK) {
        return NGX_ERROR;
    }

    r->data = ngx_pcalloc(p->pool, sizeof(ngx_mail_plus_imap_value_t));
    if (r->data == NULL) {
        return ngx_mail_plus_imap_fail(p, "out of memory");
    }

    r->data->type = NGX_MAIL_PLUS_IMAP_LIST;
    p->list = r->data;
    p->state = sw_name_sp;

    return NGX_DECLINED;
}


/* atoms, numbers, NIL, quoted strings, lists, and where they end */

static ngx_int_t
ngx_mail_plus_imap_values(ngx_mail_plus_imap_parser_t *p, u_char ch)
{
    ngx_mail_plus_imap_value_t  *v;

    switch (p->state) {

    case sw_value:
        switch (ch) {

        case ' ':
            return NGX_AGAIN;

        case '(':
            return ngx_mail_plus_imap_open(p);

        case ')':
            return ngx_mail_plus_imap_close(p);

        case '"':
            p->token_len = 0;
            p->state = sw_quoted;
            return NGX_AGAIN;

        case '{':
            p->binary = 0;
            p->literal_len = 0;
            p->token_len = 0;
            p->state = sw_literal_size;
            return NGX_AGAIN;

        case '~':
            p->state = sw_tilde;
            return NGX_AGAIN;

        case CR:
        case ']':
            return ngx_mail_plus_imap_delimiter(p, ch);
        }

        if (!ngx_mail_plus_imap_atom_char(ch)) {
            return ngx_mail_plus_imap_fail(p, "bad byte in an atom");
        }

        p->token_len = 0;
        p->state = sw_atom;

        return NGX_DECLINED;

    case sw_atom:
        if (ch == '[') {
            p->state = sw_atom_bracket;
            return ngx_mail_plus_imap_append(p, ch);
        }

        if (ngx_mail_plus_imap_atom_char(ch)) {
            return ngx_mail_plus_imap_append(p, ch);
        }

        if (ch > 0x7f || (ch < 0x20 && ch != CR)) {
            return ngx_mail_plus_imap_fail(p, "bad byte in an atom");
        }

        if (ngx_mail_plus_imap_atom_end(p) != NGX_OK) {
            return NGX_ERROR;
        }

        p->state = sw_value;

        return NGX_DECLINED;

    case sw_atom_bracket:
        if (ch == ']') {
            p->state = sw_atom;

        } else if (ch < 0x20 || ch > 0x7e || ch == '[') {
            return ngx_mail_plus_imap_fail(p, "bad byte in an atom's [...]");
        }

        return ngx_mail_plus_imap_append(p, ch);

    case sw_quoted:
        if (ch == '"') {
            v = ngx_mail_plus_imap_add(p, NGX_MAIL_PLUS_IMAP_STRING);
            if (v == NULL || ngx_mail_plus_imap_copy(p, &v->str) != NGX_OK) {
                return NGX_ERROR;
            }

            p->state = sw_value;
            return NGX_AGAIN;
        }

        if (ch == '\\') {
            p->state = sw_quoted_escape;
            return NGX_AGAIN;
        }

        if (ch == CR || ch == LF || ch == '\0') {
            return ngx_mail_plus_imap_fail(p, "unterminated quoted string");
        }

        return ngx_mail_plus_imap_append(p, ch);

    case sw_quoted_escape:
        if (ch != '"' && ch != '\\') {
            return ngx_mail_plus_imap_fail(p, "bad escape in quoted string");
        }

        p->state = sw_quoted;

        return ngx_mail_plus_imap_append(p, ch);

    default: /* sw_tilde */
        if (ch == '{') {
            p->binary = 1;
            p->literal_len = 0;
            p->token_len = 0;
            p->state = sw_literal_size;
            return NGX_AGAIN;
        }

        p->token_len = 0;
        p->state = sw_atom;

        if (ngx_mail_plus_imap_append(p, '~') != NGX_AGAIN) {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }
}


/* CR ends a data's values, "]" a code's */

static ngx_int_t
ngx_mail_plus_imap_delimiter(ngx_mail_plus_imap_parser_t *p, u_char ch)
{
    if (p->depth) {
        return ngx_mail_plus_imap_fail(p, ch == CR ? "unclosed list"
                                                   : "\"]\" in a list");
    }

    if (ch == CR) {
        if (p->next == NGX_MAIL_PLUS_IMAP_CODE) {
            return ngx_mail_plus_imap_fail(p, "unterminated response code");
        }

        p->state = sw_almost_done;

    } else {
        if (p->next != NGX_MAIL_PLUS_IMAP_CODE) {
            return ngx_mail_plus_imap_fail(p, "unexpected \"]\"");
        }

        if (p->list->nelts == 0) {
            return ngx_mail_plus_imap_fail(p, "empty response code");
        }

        p->state = sw_code_end;
    }

    /* the code's or the data's own list */

    p->depth = 1;

    return ngx_mail_plus_imap_close(p);
}


/* "{" n ["+"] "}" CRLF: the literal's size; its body is read by the caller */

static ngx_int_t
ngx_mail_plus_imap_literal(ngx_mail_plus_imap_parser_t *p, u_char ch)
{
    size_t                       d;
    ngx_mail_plus_imap_value_t  *v;

    switch (p->state) {

    case sw_literal_size:
        if (ch >= '0' && ch <= '9') {
            d = ch - '0';

            if (d > p->limits.literal
                || p->literal_len > (p->limits.literal - d) / 10)
            {
                return ngx_mail_plus_imap_fail(p, "literal too large");
            }

            p->literal_len = p->literal_len * 10 + d;
            p->token_len = 1;

            return NGX_AGAIN;
        }

        if (p->token_len == 0 || (ch != '+' && ch != '}')) {
            return ngx_mail_plus_imap_fail(p, "bad literal size");
        }

        p->state = (ch == '+') ? sw_literal_plus : sw_literal_cr;

        return NGX_AGAIN;

    case sw_literal_plus:
        if (ch != '}') {
            return ngx_mail_plus_imap_fail(p, "bad literal size");
        }

        p->state = sw_literal_cr;

        return NGX_AGAIN;

    case sw_literal_cr:
        if (ch != CR) {
            return ngx_mail_plus_imap_fail(p, "no CRLF after a literal's size");
        }

        p->state = sw_literal_lf;

        return NGX_AGAIN;

    default: /* sw_literal_lf */
        if (ch != LF) {
            return ngx_mail_plus_imap_fail(p, "no CRLF after a literal's size");
        }

        if (p->literal_len > p->limits.total - p->total) {
            return ngx_mail_plus_imap_fail(p, "response too large");
        }

        v = ngx_mail_plus_imap_add(p, NGX_MAIL_PLUS_IMAP_LITERAL);
        if (v == NULL) {
            return NGX_ERROR;
        }

        v->binary = p->binary;
        p->line_len = 0;

        if (p->literal_len == 0) {
            p->state = sw_value;
            return NGX_AGAIN;
        }

        v->str.data = ngx_pnalloc(p->pool, p->literal_len);
        if (v->str.data == NULL) {
            return ngx_mail_plus_imap_fail(p, "out of memory");
        }

        p->literal = v;
        p->state = sw_literal_body;

        return NGX_AGAIN;
    }
}


static ngx_int_t
ngx_mail_plus_imap_atom_end(ngx_mail_plus_imap_parser_t *p)
{
    ngx_int_t                    rc;
    ngx_mail_plus_imap_value_t  *v;

    v = ngx_mail_plus_imap_add(p, NGX_MAIL_PLUS_IMAP_ATOM);
    if (v == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_mail_plus_imap_digits(p->token, p->token_len, &v->number);

    if (rc == NGX_ERROR) {
        return ngx_mail_plus_imap_fail(p, "number too large");
    }

    if (rc == NGX_OK) {
        v->type = NGX_MAIL_PLUS_IMAP_NUMBER;

    } else if (p->token_len == 3
               && ngx_strncasecmp(p->token, (u_char *) "NIL", 3) == 0)
    {
        v->type = NGX_MAIL_PLUS_IMAP_NIL;
    }

    return ngx_mail_plus_imap_copy(p, &v->str);
}


static ngx_int_t
ngx_mail_plus_imap_open(ngx_mail_plus_imap_parser_t *p)
{
    ngx_mail_plus_imap_value_t  *v;

    if (p->depth == p->limits.depth) {
        return ngx_mail_plus_imap_fail(p, "lists nested too deep");
    }

    v = ngx_mail_plus_imap_add(p, NGX_MAIL_PLUS_IMAP_LIST);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->parent = p->list;
    p->list = v;
    p->depth++;

    return NGX_AGAIN;
}


/* the items of the list being read, in order, as an array */

static ngx_int_t
ngx_mail_plus_imap_close(ngx_mail_plus_imap_parser_t *p)
{
    size_t                       size;
    ngx_uint_t                   i;
    ngx_mail_plus_imap_value_t  *list, *v, *next;

    if (p->depth == 0) {
        return ngx_mail_plus_imap_fail(p, "unbalanced \")\"");
    }

    list = p->list;

    if (list->nelts) {
        size = list->nelts * sizeof(ngx_mail_plus_imap_value_t *);

        list->items = ngx_palloc(p->pool, size);
        if (list->items == NULL) {
            return ngx_mail_plus_imap_fail(p, "out of memory");
        }

        i = list->nelts;

        for (v = list->last; v; v = next) {
            next = v->next;
            v->next = NULL;
            list->items[--i] = v;
        }
    }

    p->list = list->parent;
    list->parent = NULL;
    list->last = NULL;
    p->depth--;

    return NGX_AGAIN;
}


/*
 * A value at the end of the list being read; while it is read the list's
 * "last" is its last item and each item's "next" the one before it.
 */

static ngx_mail_plus_imap_value_t *
ngx_mail_plus_imap_add(ngx_mail_plus_imap_parser_t *p,
    ngx_mail_plus_imap_type_e type)
{
    ngx_mail_plus_imap_value_t  *v, *list;

    list = p->list;

    if (list->nelts == p->limits.items) {
        (void) ngx_mail_plus_imap_fail(p, "too many items in a list");
        return NULL;
    }

    v = ngx_pcalloc(p->pool, sizeof(ngx_mail_plus_imap_value_t));
    if (v == NULL) {
        (void) ngx_mail_plus_imap_fail(p, "out of memory");
        return NULL;
    }

    v->type = type;
    v->next = list->last;
    list->last = v;
    list->nelts++;

    return v;
}


static ngx_int_t
ngx_mail_plus_imap_append(ngx_mail_plus_imap_parser_t *p, u_char ch)
{
    if (p->token_len == p->limits.line) {
        return ngx_mail_plus_imap_fail(p, "line too long");
    }

    p->token[p->token_len++] = ch;

    return NGX_AGAIN;
}


static ngx_int_t
ngx_mail_plus_imap_copy(ngx_mail_plus_imap_parser_t *p, ngx_str_t *dst)
{
    dst->len = p->token_len;
    dst->data = NULL;

    if (p->token_len) {
        dst->data = ngx_pnalloc(p->pool, p->token_len);
        if (dst->data == NULL) {
            return ngx_mail_plus_imap_fail(p, "out of memory");
        }

        ngx_memcpy(dst->data, p->token, p->token_len);
    }

    p->token_len = 0;

    return NGX_OK;
}


/* NGX_OK: a number; NGX_DECLINED: not digits only; NGX_ERROR: too large */

static ngx_int_t
ngx_mail_plus_imap_digits(u_char *s, size_t len, uint64_t *n)
{
    uint64_t  value, d;

    if (len == 0) {
        return NGX_DECLINED;
    }

    value = 0;

    while (len--) {
        if (*s < '0' || *s > '9') {
            return NGX_DECLINED;
        }

        d = *s++ - '0';

        if (value > (UINT64_MAX - d) / 10) {
            value = UINT64_MAX;

            while (len--) {
                if (*s < '0' || *s > '9') {
                    return NGX_DECLINED;
                }

                s++;
            }

            return NGX_ERROR;
        }

        value = value * 10 + d;
    }

    *n = value;

    return NGX_OK;
}


/* an atom's byte outside "[...]": no SP, CTL, 8-bit, "(){\"]" */

static ngx_uint_t
ngx_mail_plus_imap_atom_char(u_char ch)
{
    if (ch <= 0x20 || ch >= 0x7f) {
        return 0;
    }

    switch (ch) {
    case '(':
    case ')':
    case '{':
    case '"':
    case ']':
        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_mail_plus_imap_fail(ngx_mail_plus_imap_parser_t *p, const char *error)
{
    p->error = error;
    p->state = sw_failed;

    return NGX_ERROR;
}


ngx_mail_plus_imap_value_t *
ngx_mail_plus_imap_item(ngx_mail_plus_imap_value_t *v, ngx_uint_t i)
{
    if (v == NULL || v->type != NGX_MAIL_PLUS_IMAP_LIST || i >= v->nelts) {
        return NULL;
    }

    return v->items[i];
}


ngx_uint_t
ngx_mail_plus_imap_atom_is(ngx_mail_plus_imap_value_t *v, char *s, size_t n)
{
    if (v == NULL || v->type != NGX_MAIL_PLUS_IMAP_ATOM || v->str.len != n) {
        return 0;
    }

    return ngx_strncasecmp(v->str.data, (u_char *) s, n) == 0;
}


ngx_int_t
ngx_mail_plus_imap_number(ngx_mail_plus_imap_value_t *v, uint64_t *n)
{
    if (v == NULL || v->type != NGX_MAIL_PLUS_IMAP_NUMBER) {
        return NGX_ERROR;
    }

    *n = v->number;

    return NGX_OK;
}


ngx_int_t
ngx_mail_plus_imap_string(ngx_mail_plus_imap_value_t *v, ngx_str_t *s)
{
    if (v == NULL) {
        return NGX_ERROR;
    }

    if (v->type == NGX_MAIL_PLUS_IMAP_NIL || v->type == NGX_MAIL_PLUS_IMAP_LIST)
    {
        return NGX_DECLINED;
    }

    *s = v->str;

    return NGX_OK;
}



u_char *
ngx_mail_plus_imap_uid_range(u_char *p, u_char *last,
    ngx_mail_plus_imap_range_t *r)
{
    uint64_t    n[2];
    ngx_uint_t  k;

    for (k = 0; k < 2; k++) {
        if (p == last || *p < '1' || *p > '9') {
            return NULL;
        }

        n[k] = 0;

        while (p < last && *p >= '0' && *p <= '9') {
            n[k] = n[k] * 10 + (*p++ - '0');

            if (n[k] > 0xffffffff) {
                return NULL;
            }
        }

        if (k == 0) {
            n[1] = n[0];

            if (p == last || *p != ':') {
                break;
            }

            p++;
        }
    }

    r->first = ngx_min(n[0], n[1]);
    r->last = ngx_max(n[0], n[1]);

    if (p == last) {
        return p;
    }

    if (*p++ != ',' || p == last) {
        return NULL;
    }

    return p;
}


ngx_int_t
ngx_mail_plus_imap_fetch_body(ngx_mail_plus_imap_response_t *resp,
    uint64_t uid, ngx_str_t *body)
{
    uint64_t                     n;
    ngx_uint_t                   i;
    ngx_mail_plus_imap_value_t  *list, *item, *value;

    if (resp->kind != NGX_MAIL_PLUS_IMAP_UNTAGGED
        || resp->status != NGX_MAIL_PLUS_IMAP_DATA
        || resp->name.len != 5
        || ngx_strncasecmp(resp->name.data, (u_char *) "FETCH", 5) != 0)
    {
        return NGX_DECLINED;
    }

    list = ngx_mail_plus_imap_item(resp->data, 0);

    if (list == NULL || list->type != NGX_MAIL_PLUS_IMAP_LIST) {
        return NGX_DECLINED;
    }

    n = 0;
    value = NULL;

    for (i = 0; i + 1 < list->nelts; i += 2) {
        item = list->items[i];

        if (ngx_mail_plus_imap_atom_is(item, "UID", 3)) {
            (void) ngx_mail_plus_imap_number(list->items[i + 1], &n);

        } else if (item->type == NGX_MAIL_PLUS_IMAP_ATOM
                   && ((item->str.len > 5
                        && ngx_strncasecmp(item->str.data,
                                           (u_char *) "BODY[", 5) == 0)
                       || (item->str.len > 7
                           && ngx_strncasecmp(item->str.data,
                                              (u_char *) "BINARY[", 7)
                              == 0)))
        {
            value = list->items[i + 1];
        }
    }

    if (n != uid || value == NULL
        || ngx_mail_plus_imap_string(value, body) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}
