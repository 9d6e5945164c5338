
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"


/* TODO(jwt): a stub until the JWT verifier lands */

ngx_int_t
ngx_mail_plus_jwt_verify(ngx_mail_plus_token_req_t *req)
{
    req->result = NGX_MAIL_PLUS_TOKEN_INVALID;
    req->error = "not implemented";

    return NGX_OK;
}
