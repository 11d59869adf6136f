// Deployed into the resource group of a workspace's Log Analytics workspace.
// - custom "DSR telemetry reader": run queries only (export of telemetry rows about a subject)
// - "Data Purger": only when telemetry purge is enabled for this workspace. Data Purger can
//   irreversibly delete data; it is never granted by default.
targetScope = 'resourceGroup'

param logAnalyticsName string
param principalId string
param purgeEnabled bool = false

var dataPurger = '150f5e0c-0603-4f03-8c7f-cf70034c4e90'

resource law 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource readerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(law.id, 'azureml-dsr-telemetry-reader')
  properties: {
    roleName: 'AzureML DSR telemetry reader ${logAnalyticsName} ${uniqueString(law.id)}'
    description: 'azureml-dsr: query one Log Analytics workspace (export of a data subject\'s telemetry rows).'
    type: 'CustomRole'
    assignableScopes: [
      law.id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.OperationalInsights/workspaces/read'
          'Microsoft.OperationalInsights/workspaces/query/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(law.id, principalId, readerRole.id)
  scope: law
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: readerRole.id
  }
}

resource purger 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (purgeEnabled) {
  name: guid(law.id, principalId, dataPurger)
  scope: law
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataPurger)
  }
}
