
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_smtp.h"



/*
 * The SMTP parser: command lines, paths, BDAT and AUTH arguments, and the
 * DATA/BDAT content reader.  Pure functions over byte ranges: they neither
 * allocate nor call into nginx's runtime, so the fuzz target links this
 * file alone.
 *
 * Line endings: a command line ends with LF, a CR before it is dropped.
 * In message content a bare CR or a bare LF is stored as CRLF, so that
 * the stored message has one kind of line ending; the end of DATA is
 * recognized only as CRLF "." CRLF, so that no bare line ending can end
 * a message early (no "SMTP smuggling").
 */


static void ngx_mail_plus_smtp_header_name(ngx_mail_plus_smtp_data_t *d,
    u_char ch);
static ngx_int_t ngx_mail_plus_smtp_caseeq(u_char *p, size_t len,
    char *s);
static ngx_int_t ngx_mail_plus_smtp_notify(u_char *val, size_t vlen);
static ngx_int_t ngx_mail_plus_smtp_xtext(u_char *val, size_t vlen,
    ngx_uint_t orcpt);
static ngx_uint_t ngx_mail_plus_smtp_hex(u_char c);
static ngx_int_t ngx_mail_plus_smtp_domain(ngx_str_t *domain);
static ngx_int_t ngx_mail_plus_smtp_parse_addr(u_char **pos, u_char *last,
    ngx_uint_t rcpt, ngx_mail_plus_smtp_path_t *path);
static u_char *ngx_mail_plus_smtp_scan_addr(u_char *p, u_char *last,
    u_char **at, ngx_mail_plus_smtp_path_t *path);
static ngx_int_t ngx_mail_plus_smtp_rcpt_param(ngx_mail_plus_smtp_path_t *path,
    u_char *key, size_t klen, u_char *val, size_t vlen);
static ngx_int_t ngx_mail_plus_smtp_mail_param(ngx_mail_plus_smtp_path_t *path,
    u_char *key, size_t klen, u_char *val, size_t vlen);


typedef struct {
    char                       *name;
    ngx_uint_t                  command;
} ngx_mail_plus_smtp_verb_t;


static ngx_mail_plus_smtp_verb_t  ngx_mail_plus_smtp_verbs[] = {
    { "HELO", NGX_MAIL_PLUS_SMTP_HELO },
    { "EHLO", NGX_MAIL_PLUS_SMTP_EHLO },
    { "MAIL", NGX_MAIL_PLUS_SMTP_MAIL },
    { "RCPT", NGX_MAIL_PLUS_SMTP_RCPT },
    { "DATA", NGX_MAIL_PLUS_SMTP_DATA },
    { "BDAT", NGX_MAIL_PLUS_SMTP_BDAT },
    { "RSET", NGX_MAIL_PLUS_SMTP_RSET },
    { "NOOP", NGX_MAIL_PLUS_SMTP_NOOP },
    { "QUIT", NGX_MAIL_PLUS_SMTP_QUIT },
    { "VRFY", NGX_MAIL_PLUS_SMTP_VRFY },
    { "EXPN", NGX_MAIL_PLUS_SMTP_EXPN },
    { "HELP", NGX_MAIL_PLUS_SMTP_HELP },
    { "AUTH", NGX_MAIL_PLUS_SMTP_AUTH },
    { "STARTTLS", NGX_MAIL_PLUS_SMTP_STARTTLS },
    { "TURN", NGX_MAIL_PLUS_SMTP_NOTIMPL },
    { "ETRN", NGX_MAIL_PLUS_SMTP_NOTIMPL },
    { "ATRN", NGX_MAIL_PLUS_SMTP_NOTIMPL },
    { "SEND", NGX_MAIL_PLUS_SMTP_NOTIMPL },
    { "SOML", NGX_MAIL_PLUS_SMTP_NOTIMPL },
    { "SAML", NGX_MAIL_PLUS_SMTP_NOTIMPL },
    { NULL, 0 }
};


/*
 * NGX_OK: a line, without its line ending; NGX_AGAIN: more input needed;
 * NGX_MAIL_PLUS_SMTP_TOO_LONG: the end of a line longer than max, which
 * was discarded as it arrived (*skip remembers that across calls)
 */

ngx_int_t
ngx_mail_plus_smtp_read_line(ngx_buf_t *b, size_t max, ngx_str_t *line,
    ngx_uint_t *skip)
{
    u_char  *p, *lf;

    lf = NULL;

    for (p = b->pos; p < b->last; p++) {
        if (*p == LF) {
            lf = p;
            break;
        }
    }

    if (lf == NULL) {

        if (*skip || (size_t) (b->last - b->pos) > max + 1) {
            *skip = 1;
            b->pos = b->last;
        }

        return NGX_AGAIN;
    }

    line->data = b->pos;
    line->len = lf - b->pos;

    if (line->len && line->data[line->len - 1] == CR) {
        line->len--;
    }

    b->pos = lf + 1;

    if (*skip) {
        *skip = 0;
        return NGX_MAIL_PLUS_SMTP_TOO_LONG;
    }

    if (line->len > max) {
        return NGX_MAIL_PLUS_SMTP_TOO_LONG;
    }

    return NGX_OK;
}


/* the command of a line and its argument, without surrounding spaces */

ngx_uint_t
ngx_mail_plus_smtp_parse_command(ngx_str_t *line, ngx_str_t *arg)
{
    u_char                     *p, *last, *verb;
    size_t                      len;
    ngx_mail_plus_smtp_verb_t  *v;

    p = line->data;
    last = p + line->len;

    verb = p;

    while (p < last && *p != ' ') {
        p++;
    }

    len = p - verb;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    arg->data = p;
    arg->len = last - p;

    for (v = ngx_mail_plus_smtp_verbs; v->name; v++) {
        if (ngx_mail_plus_smtp_caseeq(verb, len, v->name)) {
            return v->command;
        }
    }

    return NGX_MAIL_PLUS_SMTP_UNKNOWN;
}


/*
 * RFC 3461 4.1: "NEVER", or a list of SUCCESS, FAILURE and DELAY
 */

static ngx_int_t
ngx_mail_plus_smtp_notify(u_char *val, size_t vlen)
{
    u_char      *p, *last, *word;
    ngx_uint_t   never, words;

    if (val == NULL || vlen == 0) {
        return NGX_ERROR;
    }

    never = 0;
    words = 0;
    last = val + vlen;

    for (p = val; p <= last; p++) {

        if (p < last && *p != ',') {
            continue;
        }

        word = val;
        val = p + 1;
        words++;

        if (ngx_mail_plus_smtp_caseeq(word, p - word, "NEVER")) {
            never = 1;
            continue;
        }

        if (!ngx_mail_plus_smtp_caseeq(word, p - word, "SUCCESS")
            && !ngx_mail_plus_smtp_caseeq(word, p - word, "FAILURE")
            && !ngx_mail_plus_smtp_caseeq(word, p - word, "DELAY"))
        {
            return NGX_ERROR;
        }
    }

    return (never && words > 1) ? NGX_ERROR : NGX_OK;
}


/*
 * RFC 3461 4: xtext, printable US-ASCII but "+" and "=", "+XX" for the
 * rest; an ORCPT value is "addr-type;xtext"
 */

static ngx_int_t
ngx_mail_plus_smtp_xtext(u_char *val, size_t vlen, ngx_uint_t orcpt)
{
    u_char  *p, *last;

    if (val == NULL || vlen == 0 || vlen > 500) {
        return NGX_ERROR;
    }

    p = val;
    last = val + vlen;

    if (orcpt) {
        while (p < last && *p != ';') {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-'))
            {
                return NGX_ERROR;
            }

            p++;
        }

        if (p == val || p == last) {
            return NGX_ERROR;
        }

        p++;
    }

    for ( /* void */ ; p < last; p++) {

        if (*p == '+') {
            if (last - p < 3
                || !ngx_mail_plus_smtp_hex(p[1])
                || !ngx_mail_plus_smtp_hex(p[2]))
            {
                return NGX_ERROR;
            }

            p += 2;
            continue;
        }

        if (*p < '!' || *p > '~' || *p == '=') {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_mail_plus_smtp_hex(u_char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}


/*
 * a domain is letters, digits, "-", "." and non-ASCII (SMTPUTF8), or an
 * address literal "[...]": no quote, backslash or "@" that would let the
 * session and the delivery find different domains in one address
 */

static ngx_int_t
ngx_mail_plus_smtp_domain(ngx_str_t *domain)
{
    u_char  *p, *last;

    p = domain->data;
    last = p + domain->len;

    if (*p == '[') {
        if (domain->len < 3 || last[-1] != ']') {
            return NGX_ERROR;
        }

        for (p++; p < last - 1; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '.' || *p == ':'
                  || *p == '-'))
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    for ( /* void */ ; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'
              || *p == '_' || *p >= 0x80))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * "FROM:<path> params" or "TO:<path> params"; NGX_OK, NGX_ERROR on a
 * syntax error, NGX_MAIL_PLUS_SMTP_BAD_PARAM on an unknown or invalid
 * parameter (path->param)
 */

ngx_int_t
ngx_mail_plus_smtp_parse_path(ngx_str_t *arg, ngx_uint_t rcpt,
    ngx_mail_plus_smtp_path_t *path)
{
    u_char     *p, *last, *key, *val;
    size_t      klen, vlen, plen;
    ngx_int_t   rc;

    path->addr.len = 0;
    path->addr.data = NULL;
    path->domain.len = 0;
    path->domain.data = NULL;
    path->size = -1;
    path->body = NGX_MAIL_PLUS_BODY_NONE;
    path->param.len = 0;
    path->param.data = NULL;
    ngx_str_null(&path->ret);
    ngx_str_null(&path->envid);
    ngx_str_null(&path->notify);
    ngx_str_null(&path->orcpt);
    path->smtputf8 = 0;
    path->utf8 = 0;

    p = arg->data;
    last = p + arg->len;

    plen = rcpt ? 3 : 5;

    if ((size_t) (last - p) < plen
        || !ngx_mail_plus_smtp_caseeq(p, plen, rcpt ? "TO:" : "FROM:"))
    {
        return NGX_ERROR;
    }

    p += plen;

    /* be lenient about spaces after the colon, as most servers are */

    while (p < last && *p == ' ') {
        p++;
    }

    if (p == last || *p != '<') {
        return NGX_ERROR;
    }

    p++;

    if (ngx_mail_plus_smtp_parse_addr(&p, last, rcpt, path) != NGX_OK) {
        return NGX_ERROR;
    }

    /* parameters */

    for ( ;; ) {

        while (p < last && *p == ' ') {
            p++;
        }

        if (p == last) {
            break;
        }

        key = p;

        while (p < last && *p != ' ' && *p != '=') {
            p++;
        }

        klen = p - key;
        val = NULL;
        vlen = 0;

        if (p < last && *p == '=') {
            val = ++p;

            while (p < last && *p != ' ') {
                p++;
            }

            vlen = p - val;
        }

        path->param.data = key;
        path->param.len = p - key;

        if (rcpt) {
            rc = ngx_mail_plus_smtp_rcpt_param(path, key, klen, val, vlen);

        } else {
            rc = ngx_mail_plus_smtp_mail_param(path, key, klen, val, vlen);
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    path->param.len = 0;
    path->param.data = NULL;

    return NGX_OK;
}


/*
 * the address inside <>, *pos just after the "<": a source route "@a,@b:"
 * skipped, the address and its domain checked; *pos is left just after
 * the ">"; NGX_OK or NGX_ERROR
 */

static ngx_int_t
ngx_mail_plus_smtp_parse_addr(u_char **pos, u_char *last, ngx_uint_t rcpt,
    ngx_mail_plus_smtp_path_t *path)
{
    u_char  *p, *start, *at;

    p = *pos;

    /* a source route "@a,@b:" is accepted and ignored (RFC 5321 4.1.2) */

    if (p < last && *p == '@') {
        while (p < last && *p != ':' && *p != '>') {
            p++;
        }

        if (p == last || *p != ':') {
            return NGX_ERROR;
        }

        p++;
    }

    start = p;

    p = ngx_mail_plus_smtp_scan_addr(p, last, &at, path);

    if (p == NULL) {
        return NGX_ERROR;
    }

    path->addr.data = start;
    path->addr.len = p - start;

    if (path->addr.len > NGX_MAIL_PLUS_SMTP_MAX_PATH) {
        return NGX_ERROR;
    }

    if (at) {
        if (at == start || at + 1 == p) {
            return NGX_ERROR;
        }

        path->domain.data = at + 1;
        path->domain.len = p - at - 1;

        if (ngx_mail_plus_smtp_domain(&path->domain) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (path->addr.len) {

        /* only <Postmaster> may go without a domain */

        if (!rcpt
            || !ngx_mail_plus_smtp_caseeq(start, path->addr.len, "POSTMASTER"))
        {
            return NGX_ERROR;
        }

    } else if (rcpt) {
        return NGX_ERROR;
    }

    *pos = p + 1;

    return NGX_OK;
}


/*
 * the bytes of an address up to its ">", quoted strings and their escapes
 * taken whole: the position of the ">", *at the last "@" outside quotes
 * or NULL, path->utf8 set on a non-ASCII character; NULL on a byte no
 * address may hold, on non-ASCII bytes that are not UTF-8 (RFC 6531
 * allows UTF-8 only), or on no ">"
 */

static u_char *
ngx_mail_plus_smtp_scan_addr(u_char *p, u_char *last, u_char **at,
    ngx_mail_plus_smtp_path_t *path)
{
    u_char      *next;
    ngx_uint_t   quoted, escaped;

    *at = NULL;
    quoted = 0;

    for ( /* void */ ; p < last; p++) {

        if (*p < 0x20 || *p == 0x7f) {
            return NULL;
        }

        escaped = 0;

        if (quoted && *p == '\\' && p + 1 < last) {

            /* an escaped byte is a byte of the address too */

            p++;
            escaped = 1;

            if (*p < 0x20 || *p == 0x7f) {
                return NULL;
            }
        }

        if (*p >= 0x80) {

            /* a whole UTF-8 character, nginx's decoder refusing overlong
               forms and truncated or stray bytes */

            next = p;

            if (ngx_utf8_decode(&next, last - p) > 0x10ffff) {
                return NULL;
            }

            path->utf8 = 1;
            p = next - 1;
            continue;
        }

        if (quoted) {
            if (*p == '"' && !escaped) {
                quoted = 0;
            }

            continue;
        }

        if (*p == '"') {
            quoted = 1;
            continue;
        }

        if (*p == '>') {
            break;
        }

        if (*p == ' ' || *p == '<' || *p == ',' || *p == ';') {
            return NULL;
        }

        if (*p == '@') {
            *at = p;
        }
    }

    if (p == last || quoted) {
        return NULL;
    }

    return p;
}


/* a parameter of RCPT TO: RFC 3461 4 NOTIFY and ORCPT */

static ngx_int_t
ngx_mail_plus_smtp_rcpt_param(ngx_mail_plus_smtp_path_t *path, u_char *key,
    size_t klen, u_char *val, size_t vlen)
{
    if (ngx_mail_plus_smtp_caseeq(key, klen, "NOTIFY")
        && path->notify.len == 0
        && ngx_mail_plus_smtp_notify(val, vlen) == NGX_OK)
    {
        path->notify.data = val;
        path->notify.len = vlen;
        return NGX_OK;
    }

    if (ngx_mail_plus_smtp_caseeq(key, klen, "ORCPT")
        && path->orcpt.len == 0
        && ngx_mail_plus_smtp_xtext(val, vlen, 1) == NGX_OK)
    {
        path->orcpt.data = val;
        path->orcpt.len = vlen;
        return NGX_OK;
    }

    return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
}


/*
 * a parameter of MAIL FROM: RET, ENVID (RFC 3461), SIZE (RFC 1870), BODY
 * (RFC 6152), SMTPUTF8 (RFC 6531), AUTH (RFC 4954)
 */

static ngx_int_t
ngx_mail_plus_smtp_mail_param(ngx_mail_plus_smtp_path_t *path, u_char *key,
    size_t klen, u_char *val, size_t vlen)
{
    if (ngx_mail_plus_smtp_caseeq(key, klen, "RET")) {

        if (path->ret.len
            || val == NULL
            || !(ngx_mail_plus_smtp_caseeq(val, vlen, "FULL")
                 || ngx_mail_plus_smtp_caseeq(val, vlen, "HDRS")))
        {
            return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
        }

        path->ret.data = val;
        path->ret.len = vlen;

        return NGX_OK;
    }

    if (ngx_mail_plus_smtp_caseeq(key, klen, "ENVID")) {

        if (path->envid.len || vlen > 100
            || ngx_mail_plus_smtp_xtext(val, vlen, 0) != NGX_OK)
        {
            return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
        }

        path->envid.data = val;
        path->envid.len = vlen;

        return NGX_OK;
    }

    if (ngx_mail_plus_smtp_caseeq(key, klen, "SIZE")) {

        if (val == NULL || vlen == 0 || vlen > 18 || path->size != -1) {
            return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
        }

        path->size = 0;

        for ( /* void */ ; vlen; vlen--, val++) {
            if (*val < '0' || *val > '9') {
                return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
            }

            path->size = path->size * 10 + (*val - '0');
        }

        return NGX_OK;
    }

    if (ngx_mail_plus_smtp_caseeq(key, klen, "BODY")) {

        if (val && ngx_mail_plus_smtp_caseeq(val, vlen, "7BIT")) {
            path->body = NGX_MAIL_PLUS_BODY_7BIT;

        } else if (val && ngx_mail_plus_smtp_caseeq(val, vlen, "8BITMIME")) {
            path->body = NGX_MAIL_PLUS_BODY_8BITMIME;

        } else {
            return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
        }

        return NGX_OK;
    }

    if (ngx_mail_plus_smtp_caseeq(key, klen, "SMTPUTF8")) {

        if (val) {
            return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
        }

        path->smtputf8 = 1;

        return NGX_OK;
    }

    if (ngx_mail_plus_smtp_caseeq(key, klen, "AUTH")) {

        /* RFC 4954 5: accepted, and not passed on */

        if (val == NULL) {
            return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
        }

        return NGX_OK;
    }

    return NGX_MAIL_PLUS_SMTP_BAD_PARAM;
}


/* "size" or "size LAST" */

ngx_int_t
ngx_mail_plus_smtp_parse_bdat(ngx_str_t *arg, off_t *size, ngx_uint_t *last)
{
    u_char  *p, *end;
    size_t   n;

    p = arg->data;
    end = p + arg->len;

    *size = 0;
    *last = 0;

    for (n = 0; p < end && *p >= '0' && *p <= '9'; p++, n++) {
        if (n == 18) {
            return NGX_ERROR;
        }

        *size = *size * 10 + (*p - '0');
    }

    if (n == 0) {
        return NGX_ERROR;
    }

    if (p == end) {
        return NGX_OK;
    }

    if (*p != ' ') {
        return NGX_ERROR;
    }

    while (p < end && *p == ' ') {
        p++;
    }

    if (!ngx_mail_plus_smtp_caseeq(p, end - p, "LAST")) {
        return NGX_ERROR;
    }

    *last = 1;

    return NGX_OK;
}


/* "mechanism [initial-response]" */

ngx_int_t
ngx_mail_plus_smtp_parse_auth(ngx_str_t *arg, ngx_str_t *mech,
    ngx_str_t *initial)
{
    u_char  *p, *end;

    p = arg->data;
    end = p + arg->len;

    mech->data = p;

    while (p < end && *p != ' ') {
        p++;
    }

    mech->len = p - mech->data;

    while (p < end && *p == ' ') {
        p++;
    }

    initial->data = p;
    initial->len = end - p;

    if (mech->len == 0) {
        return NGX_ERROR;
    }

    for (p = initial->data; p < end; p++) {
        if (*p == ' ') {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the content reader */

enum {
    sw_line_start = 0,
    sw_text,
    sw_cr,
    sw_dot,
    sw_dot_cr
};


void
ngx_mail_plus_smtp_data_init(ngx_mail_plus_smtp_data_t *d, ngx_uint_t bdat)
{
    ngx_memzero(d, sizeof(ngx_mail_plus_smtp_data_t));

    d->state = sw_line_start;
    d->bdat = bdat ? 1 : 0;
    d->real = 1;
    d->headers = 1;
}


static void
ngx_mail_plus_smtp_header_name(ngx_mail_plus_smtp_data_t *d, u_char ch)
{
    if (ch == ':') {
        d->collect = 0;

        if (ngx_mail_plus_smtp_caseeq(d->name, d->name_len, "DATE")) {
            d->has_date = 1;

        } else if (ngx_mail_plus_smtp_caseeq(d->name, d->name_len,
                                             "MESSAGE-ID"))
        {
            d->has_message_id = 1;
        }

        return;
    }

    if (d->name_len == sizeof(d->name) || ch <= ' ') {
        d->collect = 0;
        return;
    }

    d->name[d->name_len++] = ch;
}


/*
 * Reads content from *pos to last and stores it at *out, up to end.
 * NGX_OK: the end of DATA was read; NGX_AGAIN: all input is used;
 * NGX_MAIL_PLUS_SMTP_OUT_FULL: the output is full;
 * NGX_MAIL_PLUS_SMTP_HEADERS: the empty line after the header section is
 * next (once), so that the caller may add fields before it.
 */

ngx_int_t
ngx_mail_plus_smtp_read_data(ngx_mail_plus_smtp_data_t *d, u_char **pos,
    u_char *last, u_char **out, u_char *end)
{
    u_char     *p, *o, ch;
    ngx_int_t   rc;

    p = *pos;
    o = *out;

    while (p < last) {

        /* the most a byte can produce is ".\r\n" and CRLF */

        if (end - o < 5) {
            rc = NGX_MAIL_PLUS_SMTP_OUT_FULL;
            goto done;
        }

        ch = *p;

        if (ch >= 0x80) {
            d->eight_bit = 1;
        }

        switch (d->state) {

        case sw_line_start:

            if (d->headers && (ch == CR || ch == LF)) {
                d->headers = 0;
                d->collect = 0;
                rc = NGX_MAIL_PLUS_SMTP_HEADERS;
                goto done;
            }

            if (ch == '.' && !d->bdat) {
                d->state = sw_dot;
                p++;
                break;
            }

            if (d->headers) {
                d->collect = (ch != ' ' && ch != '\t');
                d->name_len = 0;
            }

            d->state = sw_text;

            /* fall through */

        case sw_text:

            if (ch == CR) {
                d->state = sw_cr;
                p++;
                break;
            }

            if (ch == LF) {
                d->bare = 1;
                *o++ = CR;
                *o++ = LF;
                d->real = 0;
                d->state = sw_line_start;
                p++;
                break;
            }

            if (d->collect) {
                ngx_mail_plus_smtp_header_name(d, ch);
            }

            *o++ = ch;
            p++;
            break;

        case sw_cr:

            *o++ = CR;
            *o++ = LF;
            d->state = sw_line_start;

            if (ch == LF) {
                d->real = 1;
                p++;
                break;
            }

            /* a bare CR: the byte begins a new line */

            d->bare = 1;
            d->real = 0;
            break;

        case sw_dot:

            if (ch == CR) {
                d->state = sw_dot_cr;
                p++;
                break;
            }

            if (ch == LF) {

                /* ".\n": not the end; the line "." is kept */

                d->bare = 1;
                *o++ = '.';
                *o++ = CR;
                *o++ = LF;
                d->real = 0;
                d->state = sw_line_start;
                p++;
                break;
            }

            /* the first of the dots is dropped (RFC 5321 4.5.2) */

            d->collect = 0;
            d->state = sw_text;
            break;

        case sw_dot_cr:

            if (ch == LF) {
                p++;

                if (d->real) {
                    d->state = sw_line_start;
                    rc = NGX_OK;
                    goto done;
                }

                /* a line "." after a bare line ending is kept */

                *o++ = '.';
                *o++ = CR;
                *o++ = LF;
                d->state = sw_line_start;
                d->real = 1;
                break;
            }

            /* ".\r" and a bare CR: the line "." is kept */

            d->bare = 1;
            *o++ = '.';
            *o++ = CR;
            *o++ = LF;
            d->real = 0;
            d->state = sw_line_start;
            break;
        }
    }

    rc = NGX_AGAIN;

done:

    d->size += o - *out;

    *pos = p;
    *out = o;

    return rc;
}


/* the end of BDAT LAST: the last line gets its line ending; 3 bytes at most */

u_char *
ngx_mail_plus_smtp_data_finish(ngx_mail_plus_smtp_data_t *d, u_char *out)
{
    switch (d->state) {

    case sw_cr:
    case sw_text:
        *out++ = CR;
        *out++ = LF;
        break;

    case sw_dot:
    case sw_dot_cr:
        *out++ = '.';
        *out++ = CR;
        *out++ = LF;
        break;
    }

    d->state = sw_line_start;

    return out;
}


static ngx_int_t
ngx_mail_plus_smtp_caseeq(u_char *p, size_t len, char *s)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || ngx_toupper(p[i]) != (u_char) s[i]) {
            return 0;
        }
    }

    return s[i] == '\0';
}
