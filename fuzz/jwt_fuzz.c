/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the JWT verifier, ngx_mail_plus_jwt_verify(), with
 * a fixed JWKS (an RSA, a P-256 and an Ed25519 key; the seeds in
 * fuzz/corpus/jwt/ are tokens they signed, valid until 2100, and broken
 * ones).  The input is a token, or "user\ntoken" with the SASL user.
 *
 * Oracles: the verifier answers NGX_OK, VALID or INVALID; INVALID has a
 * reason that is not in the token's memory, VALID none; VALID names a
 * login of 1 to 255 bytes with no control byte, space, quote or
 * backslash, equal to the user if one was given (case aside), copied
 * out of the token, and an expiry.
 *
 * sources: token/ngx_mail_plus_jwt.c token/ngx_mail_plus_jwks.c
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"
#include "ngx_mail_plus_jwt.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


static const char  fuzz_jwks[] =
    "{\"keys\":[{\"alg\":\"RS256\",\"e\":\"AQAB\",\"kid\":\"rsa1\",\"kty\":"
    "\"RSA\",\"n\":\"x4CDpTImDr4M5X_TXkJgWXSa6yjUcy3GHpVU288Wpxv7TQiWROSTZd"
    "wmYyjTfVxhOND62m_09fE-NYayEIGeYbelrw7l1yE3mbh0Fr3bQM05aoXGG2b5qpPG2QAJ"
    "dYYaD8Be3tgoMNmQEICboVDMm8J4dtobrVh9STm9EJzKyOe3i8KATd-HAmnYE19TkEmBJ8"
    "zp9JVUenb6TXappSjumXNsvrUOejqpItiJkNas5H6VuQ1x1rU6cyPtTDArUkVW-5CvPunx"
    "VwHI9k48X88wwX2k-yvf1O6O_ZgfDitfDtVPs_ir2-in0wqXBIGJ0ZmC2vmIe6M4pkJ_p8"
    "aI0p7TJw\",\"use\":\"sig\"},{\"alg\":\"ES256\",\"crv\":\"P-256\",\"kid"
    "\":\"ec1\",\"kty\":\"EC\",\"use\":\"sig\",\"x\":\"1gWSdqJLFV_v-OJh5TUh"
    "6mzoTx-J48FDixVaYop87Y8\",\"y\":\"jI_t5eW-g09KCK15ic5WEfoPvIrxM7G8UPzw"
    "Mo4U4BY\"},{\"alg\":\"EdDSA\",\"crv\":\"Ed25519\",\"kid\":\"ed1\",\"kt"
    "y\":\"OKP\",\"use\":\"sig\",\"x\":\"BYC3GsrkVFo8GBLo2J6_CcokgfjdKM4L_e"
    "rArtBsqp4\"}]}";


static ngx_time_t                  fuzz_time = { 1800000000, 0, 0 };
volatile ngx_time_t               *ngx_cached_time = &fuzz_time;

static ngx_log_t                   fuzz_log;
static ngx_str_t                   fuzz_audience[2] = {
    ngx_string("other"), ngx_string("mail")
};
static ngx_array_t                 fuzz_audiences = {
    fuzz_audience, 2, sizeof(ngx_str_t), 2, NULL
};
static ngx_mail_plus_token_conf_t  fuzz_conf;
static ngx_pool_t                 *fuzz_pool;     /* the keys' */


u_char *
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    if (max) {
        buf[0] = '\0';
    }

    return buf;
}


void
ngx_conf_log_error(ngx_uint_t level, ngx_conf_t *cf, ngx_err_t err,
    const char *fmt, ...)
{
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_t        *root;
    ngx_str_t      file = ngx_string("jwks");
    json_error_t   jerr;
    u_char         err[256];

    /* the pool stays: the keys are the whole run's */

    fuzz_pool = ngx_create_pool(1024, &fuzz_log);
    root = json_loads(fuzz_jwks, 0, &jerr);
    assert(fuzz_pool && root);

    fuzz_conf.jwks = ngx_mail_plus_jwks_parse(fuzz_pool, &fuzz_log, &file,
                                              root, err, sizeof(err));
    assert(fuzz_conf.jwks);
    assert(((ngx_mail_plus_jwks_t *) fuzz_conf.jwks)->nkeys == 3);

    json_decref(root);

    fuzz_conf.verifier = NGX_MAIL_PLUS_TOKEN_JWT;
    fuzz_conf.max_size = 4096;
    fuzz_conf.skew = 60;
    ngx_str_set(&fuzz_conf.claim, "email");
    ngx_str_set(&fuzz_conf.issuer, "https://idp.test");
    fuzz_conf.audiences = &fuzz_audiences;

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *nl, *e;
    size_t                      i;
    ngx_int_t                   rc;
    ngx_pool_t                 *pool;
    ngx_mail_plus_token_req_t  *req;

    if (size == 0 || size > fuzz_conf.max_size) {
        return 0;
    }

    pool = ngx_create_pool(1024, &fuzz_log);
    assert(pool);

    req = ngx_pcalloc(pool, sizeof(ngx_mail_plus_token_req_t));
    assert(req);

    req->pool = pool;
    req->log = &fuzz_log;
    req->conf = &fuzz_conf;

    /* copies of their own, so that ASan sees every read past them */

    nl = memchr(data, '\n', size);

    if (nl) {
        req->user.len = nl - data;
        req->user.data = ngx_pnalloc(pool, req->user.len);
        ngx_memcpy(req->user.data, data, req->user.len);
        size -= req->user.len + 1;
        data = nl + 1;
    }

    req->token.len = size;
    req->token.data = ngx_pnalloc(pool, size);
    ngx_memcpy(req->token.data, data, size);

    rc = ngx_mail_plus_jwt_verify(req);

    assert(rc == NGX_OK);

    if (req->result == NGX_MAIL_PLUS_TOKEN_INVALID) {
        assert(req->error != NULL);
        e = (u_char *) req->error;
        assert(e < req->token.data || e >= req->token.data + req->token.len);
        assert(req->login.len == 0);

    } else {
        assert(req->result == NGX_MAIL_PLUS_TOKEN_VALID);
        assert(req->error == NULL);
        assert(req->expires > 0);
        assert(req->login.len >= 1 && req->login.len <= 255);
        assert(req->login.data < req->token.data
               || req->login.data >= req->token.data + req->token.len);

        for (i = 0; i < req->login.len; i++) {
            assert(req->login.data[i] > 0x20 && req->login.data[i] != 0x7f
                   && req->login.data[i] != '"'
                   && req->login.data[i] != '\\');
        }

        if (req->user.len) {
            assert(req->user.len == req->login.len);
            assert(strncasecmp((char *) req->user.data,
                               (char *) req->login.data, req->login.len)
                   == 0);
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
