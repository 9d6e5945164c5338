
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the SMTP parser: the input is a client's byte
 * stream.  It is cut into command lines as the session cuts them (small
 * buffer, line limit), each line is parsed as the session parses it, and
 * after DATA or BDAT the bytes go through the content reader in pieces of
 * varying size into a small output buffer.  The stored content is checked:
 * every CR is followed by LF and every LF follows a CR.
 *
 * The DATA reader also meets two oracles on the whole input: it ends
 * exactly after the first CRLF "." CRLF (counting the CRLF of the DATA
 * command), and what it stored, dot-stuffed and sent again, reads back the
 * same.
 *
 * sources: smtp/ngx_mail_plus_smtp_parse.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_smtp.h"

#include <assert.h>
#include <stdlib.h>


#define FUZZ_LINE_MAX  64
#define FUZZ_OUT       37


static void
fuzz_check(u_char *p, u_char *last, u_char *prev)
{
    for ( /* void */ ; p < last; p++) {
        if (*p == LF) {
            assert(*prev == CR);

        } else {
            assert(*prev != CR);
        }

        *prev = *p;
    }
}


static size_t
fuzz_content(ngx_mail_plus_smtp_data_t *d, u_char *p, u_char *last,
    ngx_uint_t *done)
{
    u_char     *start, *o, *chunk, out[FUZZ_OUT], prev;
    off_t       stored;
    ngx_int_t   rc;

    start = p;
    stored = d->size;
    prev = LF;
    *done = 0;

    while (p < last) {
        chunk = p + 1 + (*p % 7);

        if (chunk > last) {
            chunk = last;
        }

        o = out;

        rc = ngx_mail_plus_smtp_read_data(d, &p, chunk, &o, out + FUZZ_OUT);

        assert(o <= out + FUZZ_OUT);
        assert(p <= chunk);

        fuzz_check(out, o, &prev);

        if (rc == NGX_OK) {
            *done = 1;
            break;
        }

        assert(rc == NGX_AGAIN || rc == NGX_MAIL_PLUS_SMTP_OUT_FULL
               || rc == NGX_MAIL_PLUS_SMTP_HEADERS);
    }

    if (!*done) {
        o = ngx_mail_plus_smtp_data_finish(d, out);
        assert(o <= out + 3);
        fuzz_check(out, o, &prev);
    }

    assert(prev == LF);
    assert(d->size >= stored);

    return p - start;
}


static size_t
fuzz_read_all(u_char *p, u_char *last, u_char *stored, size_t max,
    ngx_uint_t *done, size_t *consumed)
{
    u_char                     *start, *o, *chunk;
    ngx_int_t                   rc;
    ngx_mail_plus_smtp_data_t   d;

    ngx_mail_plus_smtp_data_init(&d, 0);

    start = p;
    o = stored;
    *done = 0;

    while (p < last) {
        chunk = p + 1 + (*p % 13);

        if (chunk > last) {
            chunk = last;
        }

        rc = ngx_mail_plus_smtp_read_data(&d, &p, chunk, &o, stored + max);

        assert(rc != NGX_MAIL_PLUS_SMTP_OUT_FULL);

        if (rc == NGX_OK) {
            *done = 1;
            break;
        }
    }

    *consumed = p - start;

    assert((off_t) (o - stored) == d.size);

    return o - stored;
}


static void
fuzz_data_oracle(u_char *data, size_t size)
{
    u_char      *in, *out, *again, *stuffed, *p, *q, *last;
    size_t       i, n, expect, consumed, len, len2;
    ngx_uint_t   done, found, bol;

    /* the end: the first CRLF "." CRLF, the DATA line's CRLF included */

    in = malloc(size + 2);
    in[0] = CR;
    in[1] = LF;
    ngx_memcpy(in + 2, data, size);

    found = 0;
    expect = size;

    for (i = 0; i + 5 <= size + 2; i++) {
        if (ngx_memcmp(in + i, "\r\n.\r\n", 5) == 0) {
            found = 1;
            expect = i + 5 - 2;
            break;
        }
    }

    free(in);

    n = 3 * size + 8;
    out = malloc(n);

    len = fuzz_read_all(data, data + size, out, n, &done, &consumed);

    assert(done == found);
    assert(consumed == expect);

    if (!done) {
        free(out);
        return;
    }

    /* the round trip of a whole message */

    stuffed = malloc(2 * len + 8);
    q = stuffed;
    bol = 1;

    for (p = out, last = out + len; p < last; p++) {
        if (bol && *p == '.') {
            *q++ = '.';
        }

        *q++ = *p;
        bol = (*p == LF);
    }

    q = ngx_cpymem(q, ".\r\n", 3);

    again = malloc(3 * (q - stuffed) + 8);

    len2 = fuzz_read_all(stuffed, q, again, 3 * (q - stuffed) + 8, &done,
                         &consumed);

    assert(done);
    assert(consumed == (size_t) (q - stuffed));
    assert(len2 == len);
    assert(ngx_memcmp(again, out, len) == 0);

    free(again);
    free(stuffed);
    free(out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    off_t                       bsize;
    ngx_buf_t                   b;
    ngx_str_t                   line, arg, mech, initial;
    ngx_uint_t                  skip, cmd, last, done;
    ngx_mail_plus_smtp_data_t   d;
    ngx_mail_plus_smtp_path_t   path;
    u_char                      buf[FUZZ_LINE_MAX + 2];
    u_char                     *p, *end;

    fuzz_data_oracle((u_char *) data, size);

    p = (u_char *) data;
    end = p + size;
    skip = 0;

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.start = buf;
    b.end = buf + sizeof(buf);
    b.pos = buf;
    b.last = buf;

    while (p < end || b.pos < b.last) {

        /* refill the line buffer as recv() would */

        if (b.pos == b.last) {
            b.pos = b.last = b.start;
        }

        if (p < end && b.last < b.end) {
            size_t  n = ngx_min((size_t) (end - p), (size_t) (b.end - b.last));

            ngx_memcpy(b.last, p, n);
            b.last += n;
            p += n;
        }

        switch (ngx_mail_plus_smtp_read_line(&b, FUZZ_LINE_MAX, &line,
                                             &skip))
        {
        case NGX_AGAIN:
            if (p == end) {
                return 0;
            }

            /* move the partial line to the start */

            if (b.pos != b.start) {
                size_t  n = b.last - b.pos;

                memmove(b.start, b.pos, n);
                b.pos = b.start;
                b.last = b.start + n;
            }

            continue;

        case NGX_MAIL_PLUS_SMTP_TOO_LONG:
            continue;
        }

        assert(line.len <= FUZZ_LINE_MAX);

        cmd = ngx_mail_plus_smtp_parse_command(&line, &arg);

        switch (cmd) {

        case NGX_MAIL_PLUS_SMTP_MAIL:
        case NGX_MAIL_PLUS_SMTP_RCPT:
            if (ngx_mail_plus_smtp_parse_path(&arg,
                                              cmd == NGX_MAIL_PLUS_SMTP_RCPT,
                                              &path)
                == NGX_OK)
            {
                assert(path.addr.len <= NGX_MAIL_PLUS_SMTP_MAX_PATH);
                assert(path.addr.data + path.addr.len <= arg.data + arg.len);
            }
            break;

        case NGX_MAIL_PLUS_SMTP_AUTH:
            (void) ngx_mail_plus_smtp_parse_auth(&arg, &mech, &initial);
            break;

        case NGX_MAIL_PLUS_SMTP_BDAT:
            if (ngx_mail_plus_smtp_parse_bdat(&arg, &bsize, &last)
                != NGX_OK)
            {
                break;
            }

            /* the chunk: first from the buffer, then from the input */

            ngx_mail_plus_smtp_data_init(&d, 1);

            while (bsize && b.pos < b.last) {
                u_char  *stop = b.pos + ngx_min(bsize, b.last - b.pos);
                size_t   n = fuzz_content(&d, b.pos, stop, &done);

                assert(!done);
                b.pos += n;
                bsize -= n;
            }

            if (bsize) {
                size_t  n = ngx_min((off_t) (end - p), bsize);

                (void) fuzz_content(&d, p, p + n, &done);
                assert(!done);
                p += n;
            }

            break;

        case NGX_MAIL_PLUS_SMTP_DATA:
            ngx_mail_plus_smtp_data_init(&d, 0);

            if (b.pos < b.last) {
                b.pos += fuzz_content(&d, b.pos, b.last, &done);

                if (done) {
                    break;
                }
            }

            p += fuzz_content(&d, p, end, &done);
            break;
        }
    }

    return 0;
}
