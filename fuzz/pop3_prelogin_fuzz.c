
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


/*
 * libFuzzer target for the POP3 reader before login (command names,
 * arguments, the text after the name, SASL response lines); the harness
 * and its invariants are in ngx_fuzz_prelogin.h.
 */


#include "ngx_fuzz_prelogin.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_prelogin(NGX_MAIL_PLUS_POP3, data, size);
}
