//! `etcdserverpb.Auth` over `api::auth`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{req_ctx, status};
use crate::api::{auth, Api};
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;

/// The Auth service.
pub struct AuthService {
    api: Arc<Api>,
}

impl AuthService {
    pub fn new(api: Arc<Api>) -> Self {
        AuthService { api }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::auth_enable(&self.api, &ctx)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::auth_disable(&self.api, &ctx)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::auth_status(&self.api, &ctx)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::authenticate(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_add(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_get(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_list(&self.api, &ctx)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_delete(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_change_password(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_grant_role(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::user_revoke_role(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::role_add(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::role_get(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::role_list(&self.api, &ctx)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::role_delete(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::role_grant_permission(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let ctx = req_ctx(&request);
        auth::role_revoke_permission(&self.api, &ctx, request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
