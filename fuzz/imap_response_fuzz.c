
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the IMAP response reader of the JMAP endpoint's
 * IMAP client: the input is what a server sends.  It is read four times,
 * each response's values in a pool of their own destroyed once the
 * response is checked and written down in a canonical form (so that a
 * value kept from one response to the next is a use after free):
 *
 *   1. in one buffer, with large limits: the reference;
 *   2. in pieces of 1 to 512 bytes (their sizes drawn from a hash of the
 *      input), each piece a buffer of its own freed after its call (so
 *      that a pointer kept into the caller's buffer is a use after free):
 *      the same responses, and the same end (the same error, at the same
 *      offset, or more bytes needed);
 *   3. in pieces, with small limits of depth, items, literal and total
 *      size drawn from the hash: the reference's responses up to the
 *      first one that exceeds a limit, then an error; if none does, the
 *      reference's end or an error (in the bytes after the last
 *      response);
 *   4. in pieces, with a short line limit: a prefix of the reference's
 *      responses, then the reference's end or an error.
 *
 * Every run checks each response: every string's bytes are read (its
 * length within the limits, its data out of the input), lists within the
 * limits of depth and items, numbers and NIL as their text says, the kind,
 * status and name consistent, the size within the limit and, in one
 * buffer, the bytes the response took.  A parser that failed stays so.
 *
 * The seeds in fuzz/corpus/imap_response/ are Dovecot's answers (2.3,
 * captured) and RFC 3501/9051 examples; the binary runs them when given
 * the files as arguments (replay).
 *
 * sources: jmap/ngx_mail_plus_imap_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_mail_plus_imap_parse.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>


#define FUZZ_MAX_RESPONSES  16384


typedef struct {
    u_char                        *data;
    size_t                         len;
    size_t                         size;
} fuzz_out_t;


typedef struct {
    fuzz_out_t                     out;          /* all, canonical */
    size_t                         ends[FUZZ_MAX_RESPONSES];
    size_t                         sizes[FUZZ_MAX_RESPONSES];
    ngx_uint_t                     depths[FUZZ_MAX_RESPONSES];
    ngx_uint_t                     items[FUZZ_MAX_RESPONSES];
    size_t                         literals[FUZZ_MAX_RESPONSES];
    ngx_uint_t                     n;
    ngx_int_t                      rc;           /* AGAIN or ERROR */
    const char                    *error;
    size_t                         offset;       /* of the error */
} fuzz_run_t;


typedef struct {
    const u_char                  *input;
    size_t                         size;
    ngx_mail_plus_imap_limits_t   *limits;
    fuzz_run_t                    *run;
    ngx_uint_t                     depth;
    ngx_uint_t                     items;
    size_t                         literal;
} fuzz_check_t;


static ngx_log_t  fuzz_log;


static void
fuzz_put(fuzz_out_t *o, const void *p, size_t n)
{
    if (o->len + n > o->size) {
        o->size = (o->len + n) * 2 + 64;
        o->data = realloc(o->data, o->size);
        assert(o->data);
    }

    if (n) {
        memcpy(o->data + o->len, p, n);
        o->len += n;
    }
}


static void
fuzz_put_str(fuzz_check_t *c, ngx_str_t *s, size_t max)
{
    uint64_t  len;

    assert(s->len <= max);
    assert(s->len == 0 || s->data != NULL);

    /* copied: nothing points into the input */

    assert(s->len == 0
           || s->data + s->len <= (u_char *) c->input
           || s->data >= (u_char *) c->input + c->size);

    len = s->len;
    fuzz_put(&c->run->out, &len, sizeof(len));
    fuzz_put(&c->run->out, s->data, s->len);
}


static void
fuzz_put_value(fuzz_check_t *c, ngx_mail_plus_imap_value_t *v,
    ngx_uint_t depth)
{
    u_char      t;
    size_t      i;
    uint64_t    n;
    ngx_str_t   s;

    t = (u_char) v->type + (v->binary ? 0x10 : 0);
    fuzz_put(&c->run->out, &t, 1);

    assert(v->parent == NULL && v->last == NULL && v->next == NULL);
    assert(v->type == NGX_MAIL_PLUS_IMAP_LITERAL || !v->binary);

    switch (v->type) {

    case NGX_MAIL_PLUS_IMAP_LIST:
        assert(depth <= c->limits->depth);
        assert(v->nelts <= c->limits->items);
        assert(v->nelts == 0 || v->items != NULL);
        assert(v->str.len == 0);

        c->depth = ngx_max(c->depth, depth);
        c->items = ngx_max(c->items, v->nelts);

        n = v->nelts;
        fuzz_put(&c->run->out, &n, sizeof(n));

        for (i = 0; i < v->nelts; i++) {
            assert(ngx_mail_plus_imap_item(v, i) == v->items[i]);
            fuzz_put_value(c, v->items[i], depth + 1);
        }

        assert(ngx_mail_plus_imap_item(v, v->nelts) == NULL);
        assert(ngx_mail_plus_imap_string(v, &s) == NGX_DECLINED);
        return;

    case NGX_MAIL_PLUS_IMAP_LITERAL:
        c->literal = ngx_max(c->literal, v->str.len);
        fuzz_put_str(c, &v->str, c->limits->literal);
        break;

    case NGX_MAIL_PLUS_IMAP_NUMBER:
        assert(v->str.len > 0 && v->str.len <= c->limits->line);

        n = 0;

        for (i = 0; i < v->str.len; i++) {
            assert(v->str.data[i] >= '0' && v->str.data[i] <= '9');
            assert(n <= (UINT64_MAX - (v->str.data[i] - '0')) / 10);
            n = n * 10 + v->str.data[i] - '0';
        }

        assert(n == v->number);
        assert(ngx_mail_plus_imap_number(v, &n) == NGX_OK);
        fuzz_put(&c->run->out, &n, sizeof(n));
        fuzz_put_str(c, &v->str, c->limits->line);
        break;

    case NGX_MAIL_PLUS_IMAP_NIL:
        assert(v->str.len == 3
               && ngx_strncasecmp(v->str.data, (u_char *) "NIL", 3) == 0);
        assert(ngx_mail_plus_imap_string(v, &s) == NGX_DECLINED);
        return;

    case NGX_MAIL_PLUS_IMAP_ATOM:
        assert(v->str.len > 0);

        /* 7-bit, and SP or parentheses only in "[...]" */

        for (i = 0, t = 0; i < v->str.len; i++) {
            assert(v->str.data[i] >= 0x20 && v->str.data[i] < 0x7f);

            if (v->str.data[i] == '[' || v->str.data[i] == ']') {
                assert(t == (v->str.data[i] == ']'));
                t = (v->str.data[i] == '[');

            } else if (!t) {
                assert(v->str.data[i] != ' ' && v->str.data[i] != '('
                       && v->str.data[i] != ')' && v->str.data[i] != '{'
                       && v->str.data[i] != '"');
            }
        }

        assert(t == 0);

        assert(ngx_mail_plus_imap_atom_is(v, (char *) v->str.data,
                                          v->str.len));
        assert(ngx_mail_plus_imap_number(v, &n) == NGX_ERROR);

        /* fall through */

    default: /* NGX_MAIL_PLUS_IMAP_STRING */
        assert(v->type == NGX_MAIL_PLUS_IMAP_ATOM
               || v->type == NGX_MAIL_PLUS_IMAP_STRING);

        for (i = 0; i < v->str.len; i++) {
            assert(v->str.data[i] != '\0' && v->str.data[i] != CR
                   && v->str.data[i] != LF);
        }

        fuzz_put_str(c, &v->str, c->limits->line);
    }

    assert(ngx_mail_plus_imap_string(v, &s) == NGX_OK);
    assert(s.len == v->str.len && s.data == v->str.data);
}


static void
fuzz_response(fuzz_check_t *c, ngx_mail_plus_imap_response_t *r)
{
    u_char       h[2];
    size_t       i;
    fuzz_run_t  *run;

    run = c->run;

    assert(run->n < FUZZ_MAX_RESPONSES);
    assert(r->size > 0 && r->size <= c->limits->total);

    h[0] = (u_char) r->kind;
    h[1] = (u_char) r->status;
    fuzz_put(&run->out, h, 2);

    c->depth = 0;
    c->items = 0;
    c->literal = 0;

    switch (r->kind) {

    case NGX_MAIL_PLUS_IMAP_TAGGED:
        assert(r->tag.len > 0);
        assert(r->status >= NGX_MAIL_PLUS_IMAP_OK
               && r->status <= NGX_MAIL_PLUS_IMAP_BAD);
        fuzz_put_str(c, &r->tag, c->limits->line);
        break;

    case NGX_MAIL_PLUS_IMAP_CONTINUATION:
        assert(r->status == NGX_MAIL_PLUS_IMAP_DATA);
        break;

    default:
        assert(r->kind == NGX_MAIL_PLUS_IMAP_UNTAGGED);
        assert(r->status <= NGX_MAIL_PLUS_IMAP_BYE);
    }

    assert(r->kind == NGX_MAIL_PLUS_IMAP_TAGGED || r->tag.len == 0);

    if (r->kind == NGX_MAIL_PLUS_IMAP_UNTAGGED
        && r->status == NGX_MAIL_PLUS_IMAP_DATA)
    {
        assert(r->name.len > 0 && r->data != NULL);
        assert(r->code == NULL && r->text.len == 0);

        fuzz_put(&run->out, &r->number, sizeof(uint64_t));
        h[0] = r->has_number;
        fuzz_put(&run->out, h, 1);
        fuzz_put_str(c, &r->name, c->limits->line);

        for (i = 0; i < r->name.len; i++) {
            assert(r->name.data[i] > 0x20 && r->name.data[i] < 0x7f);
        }

        fuzz_put_value(c, r->data, 0);

    } else {
        assert(r->name.len == 0 && r->data == NULL && !r->has_number);

        if (r->code) {
            assert(r->code->nelts > 0);
            fuzz_put_value(c, r->code, 0);

        } else {
            fuzz_put(&run->out, "-", 1);
        }

        for (i = 0; i < r->text.len; i++) {
            assert(r->text.data[i] != '\0' && r->text.data[i] != LF);
            assert(r->text.data[i] != CR);
        }

        fuzz_put_str(c, &r->text, c->limits->line);
    }

    run->depths[run->n] = c->depth;
    run->items[run->n] = c->items;
    run->literals[run->n] = c->literal;
    run->sizes[run->n] = r->size;
    run->ends[run->n] = run->out.len;
    run->n++;
}


/* split: 0 in one buffer, else the seed of the pieces' sizes */

static void
fuzz_run(const u_char *data, size_t size, ngx_mail_plus_imap_limits_t *lim,
    uint64_t split, fuzz_run_t *run)
{
    u_char                       *piece;
    size_t                        off, n, start;
    ngx_int_t                     rc;
    ngx_buf_t                     b;
    ngx_pool_t                   *pool, *rpool;
    fuzz_check_t                  c;
    ngx_mail_plus_imap_parser_t   p;

    ngx_memzero(&run->out, sizeof(fuzz_out_t));
    run->n = 0;
    run->error = NULL;
    run->offset = 0;

    ngx_memzero(&c, sizeof(fuzz_check_t));

    c.input = data;
    c.size = size;
    c.limits = lim;
    c.run = run;

    pool = ngx_create_pool(1024, &fuzz_log);
    rpool = ngx_create_pool(1024, &fuzz_log);
    assert(pool && rpool);

    assert(ngx_mail_plus_imap_parser_init(&p, lim, pool) == NGX_OK);
    p.pool = rpool;

    rc = NGX_AGAIN;
    off = 0;
    start = 0;

    while (off < size) {
        n = size - off;

        if (split) {
            split ^= split << 13;
            split ^= split >> 7;
            split ^= split << 17;

            n = ngx_min(n, 1 + ((split & 7) ? split % 8 : split % 512));
        }

        piece = malloc(n);
        assert(piece);
        memcpy(piece, data + off, n);

        ngx_memzero(&b, sizeof(ngx_buf_t));
        b.start = piece;
        b.pos = piece;
        b.last = piece + n;
        b.end = piece + n;

        for ( ;; ) {
            rc = ngx_mail_plus_imap_parse(&p, &b);

            assert(b.pos >= piece && b.pos <= b.last);

            if (rc != NGX_OK) {
                break;
            }

            if (!split) {
                assert(p.response->size == (size_t) (b.pos - piece) - start);
                start = b.pos - piece;
            }

            fuzz_response(&c, p.response);

            /* the next response in a pool of its own */

            ngx_destroy_pool(rpool);
            rpool = ngx_create_pool(1024, &fuzz_log);
            assert(rpool);
            p.pool = rpool;
        }

        if (rc == NGX_ERROR) {
            assert(p.error != NULL);

            run->error = p.error;
            run->offset = off + (b.pos - piece);

            /* and stays so, whatever comes */

            assert(ngx_mail_plus_imap_parse(&p, &b) == NGX_ERROR);

            b.pos = (u_char *) "a1 OK\r\n";
            b.last = b.pos + 7;

            assert(ngx_mail_plus_imap_parse(&p, &b) == NGX_ERROR);
            assert(p.error == run->error);
            free(piece);
            break;
        }

        assert(rc == NGX_AGAIN && b.pos == b.last);

        free(piece);
        off += n;
    }

    run->rc = rc;

    ngx_destroy_pool(rpool);
    ngx_destroy_pool(pool);
}


static void
fuzz_same(fuzz_run_t *a, fuzz_run_t *b, ngx_uint_t n)
{
    size_t  len;

    assert(a->n >= n && b->n >= n);

    len = n ? a->ends[n - 1] : 0;

    assert(n == 0 || b->ends[n - 1] == len);
    assert(len == 0 || memcmp(a->out.data, b->out.data, len) == 0);
}


static void
fuzz_same_end(fuzz_run_t *a, fuzz_run_t *b)
{
    assert(a->rc == b->rc);
    assert(a->error == b->error);
    assert(a->offset == b->offset);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                        i;
    uint64_t                      h;
    ngx_uint_t                    k;
    fuzz_run_t                   *ref, *run;
    ngx_mail_plus_imap_limits_t   big, small;

    fuzz_log.log_level = NGX_LOG_DEBUG_ALL;

    h = 14695981039346656037ULL;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 1099511628211ULL;
    }

    h |= 1;

    ref = malloc(sizeof(fuzz_run_t));
    run = malloc(sizeof(fuzz_run_t));
    assert(ref && run);

    big.line = 8192;
    big.literal = 65536;
    big.depth = 32;
    big.items = 4096;
    big.total = 1 << 20;

    /* 1 and 2: one buffer, pieces */

    fuzz_run(data, size, &big, 0, ref);
    fuzz_run(data, size, &big, h, run);

    assert(ref->n == run->n);
    fuzz_same(ref, run, ref->n);
    assert(ref->out.len == run->out.len);
    fuzz_same_end(ref, run);

    free(run->out.data);

    /* 3: small limits but the line's */

    small = big;
    small.depth = h % 5;
    small.items = (h >> 8) % 17;
    small.literal = (h >> 16) % 300;
    small.total = 1 + (h >> 32) % 1024;

    fuzz_run(data, size, &small, h * 3 + 2, run);

    for (k = 0; k < ref->n; k++) {
        if (ref->depths[k] > small.depth || ref->items[k] > small.items
            || ref->literals[k] > small.literal || ref->sizes[k] > small.total)
        {
            break;
        }
    }

    assert(run->n == k);
    fuzz_same(ref, run, k);

    if (k < ref->n || run->rc != ref->rc || run->error != ref->error) {
        assert(run->rc == NGX_ERROR);
    }

    free(run->out.data);

    /* 4: a short line */

    small = big;
    small.line = 1 + h % 40;

    fuzz_run(data, size, &small, h * 5 + 4, run);

    assert(run->n <= ref->n);
    fuzz_same(ref, run, run->n);

    if (run->n < ref->n || run->rc != ref->rc || run->error != ref->error) {
        assert(run->rc == NGX_ERROR);
    }

    free(run->out.data);
    free(ref->out.data);
    free(run);
    free(ref);

    return 0;
}
