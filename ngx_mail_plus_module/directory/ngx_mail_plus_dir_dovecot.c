
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_mail.h>
#include "ngx_mail_plus_directory.h"


static char *ngx_mail_plus_dir_dovecot_conf(ngx_conf_t *cf,
    ngx_mail_plus_dir_t *dir);
static ngx_int_t ngx_mail_plus_dir_dovecot_lookup(ngx_mail_plus_dir_req_t *req);


ngx_mail_plus_dir_ops_t  ngx_mail_plus_dir_dovecot_ops = {
    ngx_string("dovecot"),
    ngx_mail_plus_dir_dovecot_conf,
    NULL,
    NULL,
    ngx_mail_plus_dir_dovecot_lookup
};


static char *
ngx_mail_plus_dir_dovecot_conf(ngx_conf_t *cf, ngx_mail_plus_dir_t *dir)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "directory type \"dovecot\" is not built yet");
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_mail_plus_dir_dovecot_lookup(ngx_mail_plus_dir_req_t *req)
{
    return NGX_ERROR;
}
