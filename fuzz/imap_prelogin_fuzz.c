
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the IMAP reader before login (tags, quoted
 * strings, literals with a bound, LITERAL+, ID lists, SASL response
 * lines); the harness and its invariants are in ngx_fuzz_prelogin.h.
 */


#include "ngx_fuzz_prelogin.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_prelogin(NGX_MAIL_PLUS_IMAP, data, size);
}
