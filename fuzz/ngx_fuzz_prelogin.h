
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * The harness of the pop3_prelogin and imap_prelogin fuzz targets: the
 * input is a client's byte stream, fed to the pre-login reader as the
 * session feeds it: a small command buffer of its own size (from the
 * first input byte), pieces of varying size as reads bring them, what is
 * left moved to the start between commands, the session ended on a full
 * buffer or on a refused non-synchronizing literal.  The bytes past what
 * was read are poisoned, so a read past b->last is an AddressSanitizer
 * report, and the buffer is allocated to its exact size.
 *
 * Invariants after every call: the buffer's pointers in order; a command
 * and its tag, name and arguments within what was read; a literal is
 * taken only when it is within the bound and fits in the buffer; every
 * refusal has its reason.
 *
 * The target includes the reader's source for its states.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_proxy.h"

#include <assert.h>
#include <stdlib.h>
#include <sanitizer/asan_interface.h>

#include "../ngx_mail_plus_module/proxy/ngx_mail_plus_proxy_parse.c"


static void
fuzz_within(ngx_buf_t *b, ngx_str_t *s)
{
    if (s->len == 0) {
        return;
    }

    assert(s->data >= b->start);
    assert(s->data + s->len <= b->pos);
}


static void
fuzz_check(ngx_mail_plus_parse_t *p, ngx_buf_t *b, ngx_int_t rc)
{
    ngx_uint_t  i;

    assert(b->start <= b->pos);
    assert(b->pos <= b->last);
    assert(b->last <= b->end);

    /* a literal under way was within the bound and fits */

    if (p->state == sw_literal) {
        assert(p->literal > 0);
        assert(p->literal <= p->literal_max);
        assert(p->literal <= (size_t) (b->end - b->pos));
        assert(p->protocol == NGX_MAIL_PLUS_IMAP);
    }

    switch (rc) {

    case NGX_AGAIN:
        assert(b->pos == b->last);
        break;

    case NGX_OK:
        assert(p->state == sw_start);

        if (p->raw) {
            assert(p->nargs == 1);
            fuzz_within(b, &p->args[0]);
            assert(ngx_strlchr(p->args[0].data,
                               p->args[0].data + p->args[0].len, LF)
                   == NULL);
            break;
        }

        assert(p->start >= b->start && p->start < b->pos);
        assert(b->pos[-1] == LF);

        fuzz_within(b, &p->name);
        assert(p->name.len > 0);

        for (i = 0; i < ngx_min(p->nargs, NGX_MAIL_PLUS_PARSE_ARGS); i++) {
            fuzz_within(b, &p->args[i]);
        }

        if (p->protocol == NGX_MAIL_PLUS_IMAP) {
            assert(p->tag.len >= 2);
            fuzz_within(b, &p->tag);
            assert(p->tag.data[p->tag.len - 1] == ' ');

            for (i = 0; i < p->tag.len - 1; i++) {
                assert(ngx_mail_plus_parse_tag_char(p->tag.data[i]));
            }

        } else {
            fuzz_within(b, &p->rest);
            assert(p->nargs == 0 || p->rest.len > 0);
        }

        break;

    case NGX_MAIL_PLUS_PARSE_LITERAL:
        assert(p->protocol == NGX_MAIL_PLUS_IMAP);
        assert(!p->plus);
        assert(p->literal <= p->literal_max);
        assert(p->literal <= (size_t) (b->end - b->pos));
        assert(b->pos[-1] == LF);
        break;

    case NGX_MAIL_PLUS_PARSE_INVALID:
        assert(p->state == sw_start);
        assert(p->error == NGX_MAIL_PLUS_PARSE_SYNTAX
               || p->error == NGX_MAIL_PLUS_PARSE_BIG);
        assert(p->error != NGX_MAIL_PLUS_PARSE_BIG || !p->plus);
        break;

    case NGX_MAIL_PLUS_PARSE_CLOSE:
        assert(p->protocol == NGX_MAIL_PLUS_IMAP);
        assert(p->error == NGX_MAIL_PLUS_PARSE_BIG);
        assert(p->plus);
        break;

    default:
        assert(0);
    }
}


static int
fuzz_prelogin(ngx_uint_t protocol, const uint8_t *data, size_t size)
{
    u_char                 *in, *last, *start;
    size_t                  n, room, bufsize;
    ngx_int_t               rc;
    ngx_buf_t               b;
    ngx_mail_plus_parse_t   p;

    if (size < 2) {
        return 0;
    }

    /* the buffer 16..271 bytes, literals up to 0..63 */

    bufsize = 16 + data[0];
    ngx_mail_plus_parse_init(&p, protocol, data[1] % 64);

    in = (u_char *) data + 2;
    last = (u_char *) data + size;

    start = malloc(bufsize);
    assert(start);

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.start = start;
    b.pos = start;
    b.last = start;
    b.end = start + bufsize;

    while (in < last) {

        if (ngx_mail_plus_parse_idle(&p)) {
            n = b.last - b.pos;

            if (n) {
                ngx_memmove(b.start, b.pos, n);
            }

            b.pos = b.start;
            b.last = b.start + n;

            /* a SASL exchange: the next line is raw, now and then */

            p.raw = (*in & 0x80) && (*in & 0x40);
        }

        room = b.end - b.last;

        if (room == 0) {

            /* the session ends: "too long command" */

            assert(!ngx_mail_plus_parse_idle(&p) || b.pos < b.last);
            break;
        }

        /* a read: 1..16 bytes, the sizes taken from the stream */

        n = 1 + (*in % 16);
        n = ngx_min(n, (size_t) (last - in));
        n = ngx_min(n, room);

        ngx_memcpy(b.last, in, n);
        in += n;
        b.last += n;

        for ( ;; ) {
            ASAN_POISON_MEMORY_REGION(b.last, b.end - b.last);

            rc = ngx_mail_plus_parse(&p, &b);

            ASAN_UNPOISON_MEMORY_REGION(b.last, b.end - b.last);

            fuzz_check(&p, &b, rc);

            if (rc == NGX_MAIL_PLUS_PARSE_CLOSE) {
                goto done;
            }

            if (rc == NGX_AGAIN) {
                break;
            }

            if (ngx_mail_plus_parse_idle(&p) && b.pos < b.last) {
                p.raw = 0;
            }
        }
    }

done:

    free(start);

    return 0;
}
