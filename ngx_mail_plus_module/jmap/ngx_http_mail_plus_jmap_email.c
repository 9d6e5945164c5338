
/*
 * Copyright (C) ngx_mail_plus_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include "ngx_http_mail_plus_jmap.h"


/*
 * Email/get, Email/query, Email/set and Email/changes (RFC 8621, section 4)
 */


ngx_http_mail_plus_jmap_method_t  ngx_http_mail_plus_jmap_email[] = {
    { NULL, 0, NULL }
};
