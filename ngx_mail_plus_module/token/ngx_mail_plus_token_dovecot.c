
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_token.h"


/* TODO(dovecot): a stub until Dovecot oauth2 checks land */

char *
ngx_mail_plus_token_dovecot_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    return "is not implemented yet";
}


char *
ngx_mail_plus_token_dovecot_init(ngx_conf_t *cf,
    ngx_mail_plus_token_conf_t *tcf)
{
    return NGX_CONF_OK;
}


ngx_int_t
ngx_mail_plus_token_dovecot(ngx_mail_plus_token_req_t *req)
{
    req->result = NGX_MAIL_PLUS_TOKEN_TEMPFAIL;
    req->error = "not implemented";

    return NGX_OK;
}
